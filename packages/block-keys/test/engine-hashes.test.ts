import { describe, expect, it } from 'vitest';
import { BlockKeysError, EngineHasher, isEngineHashAlgorithm, type EngineHashAlgorithm } from '../src/index.js';
import { generated, hex, sharedEngineCases } from './vectors.js';

function hasherFor(algorithm: string, seed: string, blockSize: number): EngineHasher {
  if (!isEngineHashAlgorithm(algorithm)) throw new Error(`vector uses unknown algorithm ${algorithm}`);
  return new EngineHasher({ algorithm, pythonHashSeed: seed, blockSize });
}

describe('vLLM engine block hashes', () => {
  it.each(sharedEngineCases.map((c) => [c.id, c] as const))('reproduces shared vector %s', (_id, c) => {
    const hasher = hasherFor(c.algo, c.seed, c.block_size);
    // The 64-bit algorithm's vectors give NONE_HASH as the int it chains: the digest's last 8 bytes.
    if (c.algo === 'sha256_cbor_64bit') expect(hex(hasher.noneHash).slice(-16)).toBe(c.none_hash_hex);
    else expect(hex(hasher.noneHash)).toBe(c.none_hash_hex);
    const extras = { loraName: c.lora_name ?? null, loraIntId: c.lora_int_id ?? null, cacheSalt: c.cache_salt ?? null, multimodal: c.mm ?? null };
    const result = hasher.hashBlocks(c.token_ids, extras);
    expect(result.digests.map(hex)).toEqual(c.blocks.map((b) => b.digest_hex));
    expect(Array.from(result.blockHashes, (v) => v.toString(16).padStart(16, '0'))).toEqual(c.blocks.map((b) => b.wire_int_hex));
    for (const block of c.blocks) {
      expect(hasher.extraKeysForBlock(extras, block.index)).toEqual(block.extra_keys);
      if (block.serialized_input_hex === undefined) continue;
      const parent = block.index === 0 ? null : result.digests[block.index - 1]!;
      const start = block.index * c.block_size;
      const input = hasher.serializedBlockInput(parent, c.token_ids, start, start + c.block_size, block.extra_keys as never);
      expect(hex(input)).toBe(block.serialized_input_hex);
    }
  });

  it.each(generated.engineHashes.map((c) => [c.id, c] as const))('matches the CPython reference for %s', (_id, c) => {
    const hasher = hasherFor(c.algorithm, c.seed, c.blockSize);
    expect(hex(hasher.noneHash)).toBe(c.noneHashHex);
    const result = hasher.hashBlocks(c.tokens, { loraName: c.loraName, loraIntId: c.loraIntId, cacheSalt: c.cacheSalt, multimodal: c.mm });
    expect(result.digests.map(hex)).toEqual(c.digests);
    expect(Array.from(result.blockHashes, String)).toEqual(c.blockHashes);
  });

  it('hashes a continuation from its parent digest exactly as the whole prompt', () => {
    const hasher = new EngineHasher({ algorithm: 'sha256', pythonHashSeed: '0', blockSize: 4 });
    const tokens = Array.from({ length: 16 }, (_, i) => 1000 + i);
    const whole = hasher.hashBlocks(tokens, { cacheSalt: 's' });
    const tail = hasher.hashBlocks(tokens, { cacheSalt: 's' }, 2, whole.digests[1]!);
    expect(tail.digests.map(hex)).toEqual(whole.digests.slice(2).map(hex));
  });

  // Expected digests from CPython 3.11: hashlib.sha256 / xxhash.xxh3_128_digest over pickle.dumps(..., protocol=5).
  it('hashes a block whose pickle passes 64 KiB as CPython does, over several pickle frames', () => {
    const tokens = Array.from({ length: 9359 }, (_, i) => 2 ** 31 + i);
    const sha = new EngineHasher({ algorithm: 'sha256', pythonHashSeed: '0', blockSize: tokens.length });
    expect(hex(sha.hashBlocks(tokens).digests[0]!)).toBe('cff7e03507bd259b1e7e59afc26bd68e2e13c34fcb9d7e6c13451b90ecda3f94');
    const xx = new EngineHasher({ algorithm: 'xxhash', pythonHashSeed: '0', blockSize: tokens.length });
    expect(hex(xx.hashBlocks(tokens).digests[0]!)).toBe('e3d92efcb679896dbbf9b071be677f4d');
  });

  it('hashes a cache salt of 64 KiB or more as CPython does, outside any pickle frame', () => {
    const hasher = new EngineHasher({ algorithm: 'sha256', pythonHashSeed: '0', blockSize: 4 });
    const digest = hasher.hashBlocks([1, 2, 3, 4], { cacheSalt: 's'.repeat(70000) }).digests[0]!;
    expect(hex(digest)).toBe('ebc9207f8a7e9dee9b733a339f4e102d6a807ae96a9040fabf84f246df3e3e72');
  });

  it('makes NONE_HASH random when PYTHONHASHSEED is unset, so two processes disagree', () => {
    const a = new EngineHasher({ algorithm: 'sha256', pythonHashSeed: null, blockSize: 16 });
    const b = new EngineHasher({ algorithm: 'sha256', pythonHashSeed: null, blockSize: 16 });
    expect(hex(a.noneHash)).not.toBe(hex(b.noneHash));
  });

  it('asks for the LoRA id under sha256_cbor_64bit and for the name elsewhere', () => {
    const legacy = new EngineHasher({ algorithm: 'sha256_cbor_64bit', pythonHashSeed: '0', blockSize: 4 });
    expect(() => legacy.hashBlocks([1, 2, 3, 4], { loraName: 'a' })).toThrow(BlockKeysError);
    const modern = new EngineHasher({ algorithm: 'sha256_cbor' satisfies EngineHashAlgorithm, pythonHashSeed: '0', blockSize: 4 });
    expect(() => modern.hashBlocks([1, 2, 3, 4], { loraIntId: 1 })).toThrow(/loraName/);
  });
});
