import { describe, expect, it } from 'vitest';
import { BlockKeysError, EngineHasher, isEngineHashAlgorithm, type EngineHashAlgorithm } from '../src/index.js';
import { readVectorJson } from '@kvix/test-support';
import { generated, hex, sharedEngineCases } from './vectors.js';

/** vLLM ≤ 0.32's hashing: what the older vectors and the CPython fixtures were made with. */
function hasherFor(algorithm: string, seed: string, blockSize: number): EngineHasher {
  if (!isEngineHashAlgorithm(algorithm)) throw new Error(`vector uses unknown algorithm ${algorithm}`);
  return new EngineHasher({ algorithm, pythonHashSeed: seed, blockSize, hashFormat: 'untagged' });
}

interface Vllm034Case {
  name: string;
  algorithm: string;
  pythonhashseed: string | null;
  reproducible: boolean;
  none_hash_hex: string;
  block_size: number;
  tokens: number[];
  lora: { name: string; path: string; int_id: number } | null;
  cache_salt: string | null;
  mm: { identifier: string; offset: number; length: number }[] | null;
  num_hash_lookahead_tokens: number;
  prompt_embeds_rows_hex: string[] | null;
  hash_extra_keys_per_block: unknown[];
  event_extra_keys: unknown[];
  expected: { digests: string[]; block_hashes: string[] };
}

const vllm034 = (readVectorJson('vllm-0.34-engine-hashes.json') as { cases: Vllm034Case[] }).cases;

/** A vector's extras as the PyValue shapes the hasher builds ({bytes_hex} → bytes). */
function pyValue(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(pyValue);
  if (v !== null && typeof v === 'object' && 'bytes_hex' in v) return new Uint8Array(Buffer.from((v as { bytes_hex: string }).bytes_hex, 'hex'));
  return typeof v === 'bigint' ? Number(v) : v;
}

describe('vLLM 0.34 engine hashes (tagged extras, LoRA path, lookahead, prompt embeds, unset seed)', () => {
  const reproducible = vllm034.filter((c) => c.reproducible);
  it('covers every reproducible case of the shared vectors', () => expect(reproducible.length).toBe(vllm034.length - 1));

  it.each(reproducible.map((c) => [c.name, c] as const))('reproduces %s', (_name, c) => {
    if (!isEngineHashAlgorithm(c.algorithm)) throw new Error(`unknown algorithm ${c.algorithm}`);
    const hasher = new EngineHasher({ algorithm: c.algorithm, pythonHashSeed: c.pythonhashseed, blockSize: c.block_size, numHashLookaheadTokens: c.num_hash_lookahead_tokens });
    expect(hex(hasher.noneHash)).toBe(c.none_hash_hex);
    const extras = {
      loraName: c.lora?.name ?? null,
      loraPath: c.lora?.path ?? null,
      cacheSalt: c.cache_salt,
      multimodal: c.mm,
      promptEmbedsRows: c.prompt_embeds_rows_hex?.map((h) => new Uint8Array(Buffer.from(h, 'hex'))) ?? null,
    };
    const result = hasher.hashBlocks(c.tokens, extras);
    expect(result.digests.map(hex)).toEqual(c.expected.digests);
    expect(Array.from(result.blockHashes, String)).toEqual(c.expected.block_hashes);
    c.hash_extra_keys_per_block.forEach((keys, b) => expect(hasher.hashExtrasForBlock(extras, b, c.tokens)).toEqual(pyValue(keys)));
    c.event_extra_keys.forEach((keys, b) => expect(hasher.extraKeysForBlock(extras, b)).toEqual(pyValue(keys)));
  });

  it('refuses sha256_cbor_64bit in the tagged format and a LoRA adapter without its path', () => {
    expect(() => new EngineHasher({ algorithm: 'sha256_cbor_64bit', pythonHashSeed: '0', blockSize: 4 })).toThrow(/untagged/);
    const tagged = new EngineHasher({ algorithm: 'sha256', pythonHashSeed: '0', blockSize: 4 });
    expect(() => tagged.hashBlocks([1, 2, 3, 4], { loraName: 'a' })).toThrow(/loraPath/);
  });

  it("seeds an unset PYTHONHASHSEED by vLLM's rule: fixed for sha256*, random for xxhash*", () => {
    const a = new EngineHasher({ algorithm: 'sha256_cbor', pythonHashSeed: null, blockSize: 4 });
    const b = new EngineHasher({ algorithm: 'sha256_cbor', pythonHashSeed: null, blockSize: 4 });
    expect(hex(a.noneHash)).toBe(hex(b.noneHash));
    expect(a.randomSeed).toBe(false);
    const x = new EngineHasher({ algorithm: 'xxhash_cbor', pythonHashSeed: null, blockSize: 4 });
    const y = new EngineHasher({ algorithm: 'xxhash_cbor', pythonHashSeed: null, blockSize: 4 });
    expect(hex(x.noneHash)).not.toBe(hex(y.noneHash));
    expect(x.randomSeed).toBe(true);
  });
});

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
    const hasher = new EngineHasher({ algorithm: 'sha256', pythonHashSeed: '0', blockSize: 4, hashFormat: 'untagged' });
    const tokens = Array.from({ length: 16 }, (_, i) => 1000 + i);
    const whole = hasher.hashBlocks(tokens, { cacheSalt: 's' });
    const tail = hasher.hashBlocks(tokens, { cacheSalt: 's' }, 2, whole.digests[1]!);
    expect(tail.digests.map(hex)).toEqual(whole.digests.slice(2).map(hex));
  });

  // Expected digests from CPython 3.11: hashlib.sha256 / xxhash.xxh3_128_digest over pickle.dumps(..., protocol=5).
  it('hashes a block whose pickle passes 64 KiB as CPython does, over several pickle frames', () => {
    const tokens = Array.from({ length: 9359 }, (_, i) => 2 ** 31 + i);
    const sha = new EngineHasher({ algorithm: 'sha256', pythonHashSeed: '0', blockSize: tokens.length, hashFormat: 'untagged' });
    expect(hex(sha.hashBlocks(tokens).digests[0]!)).toBe('cff7e03507bd259b1e7e59afc26bd68e2e13c34fcb9d7e6c13451b90ecda3f94');
    const xx = new EngineHasher({ algorithm: 'xxhash', pythonHashSeed: '0', blockSize: tokens.length, hashFormat: 'untagged' });
    expect(hex(xx.hashBlocks(tokens).digests[0]!)).toBe('e3d92efcb679896dbbf9b071be677f4d');
  });

  it('hashes a cache salt of 64 KiB or more as CPython does, outside any pickle frame', () => {
    const hasher = new EngineHasher({ algorithm: 'sha256', pythonHashSeed: '0', blockSize: 4, hashFormat: 'untagged' });
    const digest = hasher.hashBlocks([1, 2, 3, 4], { cacheSalt: 's'.repeat(70000) }).digests[0]!;
    expect(hex(digest)).toBe('ebc9207f8a7e9dee9b733a339f4e102d6a807ae96a9040fabf84f246df3e3e72');
  });

  it('makes NONE_HASH random when PYTHONHASHSEED is unset, so two processes disagree', () => {
    const a = new EngineHasher({ algorithm: 'sha256', pythonHashSeed: null, blockSize: 16, hashFormat: 'untagged' });
    const b = new EngineHasher({ algorithm: 'sha256', pythonHashSeed: null, blockSize: 16, hashFormat: 'untagged' });
    expect(hex(a.noneHash)).not.toBe(hex(b.noneHash));
  });

  it('asks for the LoRA id under sha256_cbor_64bit and for the name elsewhere', () => {
    const legacy = new EngineHasher({ algorithm: 'sha256_cbor_64bit', pythonHashSeed: '0', blockSize: 4, hashFormat: 'untagged' });
    expect(() => legacy.hashBlocks([1, 2, 3, 4], { loraName: 'a' })).toThrow(BlockKeysError);
    const modern = new EngineHasher({ algorithm: 'sha256_cbor' satisfies EngineHashAlgorithm, pythonHashSeed: '0', blockSize: 4, hashFormat: 'untagged' });
    expect(() => modern.hashBlocks([1, 2, 3, 4], { loraIntId: 1 })).toThrow(/loraName/);
  });
});
