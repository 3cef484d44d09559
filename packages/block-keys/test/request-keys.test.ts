import { describe, expect, it } from 'vitest';
import { BlockKeysError, RequestKeyHasher, fnv1a64 } from '../src/index.js';
import { decimals, generated, sharedRequestKeys } from './vectors.js';

describe('cbor-fnv request keys (llm-d compatible)', () => {
  it.each(sharedRequestKeys.cases.map((c) => [c.id, c] as const))('reproduces shared vector %s', (_id, c) => {
    const hasher = new RequestKeyHasher({ blockSize: c.blockSize, seed: c.seed });
    expect(decimals(hasher.keys(c.tokens, c.model, { extras: c.extraKeys }))).toEqual(c.keys);
  });

  it('derives the root from seed and model exactly as the worked example', () => {
    const ex = sharedRequestKeys.root_example;
    expect(fnv1a64(Buffer.from(ex.cbor_hex, 'hex')).toString()).toBe(ex.root);
    expect(new RequestKeyHasher({ seed: ex.seed }).rootKey(ex.model).toString()).toBe(ex.root);
  });
});

describe.each(['cbor-fnv', 'xxh64'] as const)('%s request keys against the Python reference', (algorithm) => {
  const cases = generated.requestKeys.filter((c) => c.algorithm === algorithm);
  it.each(cases.map((c) => [c.id, c] as const))('%s', (_id, c) => {
    const hasher = new RequestKeyHasher({ blockSize: c.blockSize, seed: c.seed, algorithm });
    expect(hasher.rootKey(c.model).toString()).toBe(c.root);
    const parent = c.parent === null ? null : BigInt(c.parent);
    expect(decimals(hasher.keys(c.tokens, c.model, { extras: c.extraKeys, parent }))).toEqual(c.keys);
  });
});

describe('request key chaining', () => {
  const hasher = new RequestKeyHasher({ blockSize: 4 });
  const tokens = Array.from({ length: 14 }, (_, i) => i * 7919);

  it('drops a trailing partial block and gives no keys below one block', () => {
    expect(hasher.keys(tokens, 'm')).toHaveLength(3);
    expect(hasher.keys([1, 2, 3], 'm')).toHaveLength(0);
  });

  it('continues a chain from an explicit parent exactly as one long prompt would', () => {
    const whole = hasher.keys(tokens.slice(0, 12), 'm');
    const head = hasher.keys(tokens.slice(0, 4), 'm');
    const tail = hasher.keys(tokens.slice(4, 12), 'm', { parent: head[0]! });
    expect([...head, ...tail]).toEqual([...whole]);
  });

  it('treats parent 0 as "no parent", as llm-d does', () => {
    expect(hasher.keys(tokens, 'm', { parent: 0n })).toEqual(hasher.keys(tokens, 'm'));
  });

  it('gives a LoRA adapter its own chain', () => {
    expect(hasher.keys(tokens, 'adapter-a')[0]).not.toBe(hasher.keys(tokens, 'base')[0]);
  });

  it('lets a cache salt on block 0 change every later key', () => {
    const plain = hasher.keys(tokens, 'm');
    const salted = hasher.keys(tokens, 'm', { extras: [['tenant-a']] });
    for (let i = 0; i < plain.length; i++) expect(salted[i]).not.toBe(plain[i]);
  });

  it('treats an empty extras list like no extras (llm-d encodes both as null)', () => {
    expect(hasher.keys(tokens, 'm', { extras: [[], null, []] })).toEqual(hasher.keys(tokens, 'm'));
  });

  it('accepts Uint32Array and number[] tokens alike, including ids above 2^31', () => {
    const big = [0, 1, 2 ** 31, 2 ** 32 - 1, 5, 6, 7, 8];
    expect(hasher.keys(Uint32Array.from(big), 'm')).toEqual(hasher.keys(big, 'm'));
  });

  it('rejects a block size that is not a positive integer, with a stable code', () => {
    for (const blockSize of [0, -16, 1.5, Number.NaN]) {
      expect(() => new RequestKeyHasher({ blockSize })).toThrowError(BlockKeysError);
      try {
        new RequestKeyHasher({ blockSize });
      } catch (err) {
        expect((err as BlockKeysError).code).toBe('INVALID_BLOCK_SIZE');
      }
    }
  });

  it('rejects an unknown algorithm naming the accepted ones', () => {
    expect(() => new RequestKeyHasher({ algorithm: 'md5' as 'xxh64' })).toThrow(/cbor-fnv, xxh64/);
  });
});
