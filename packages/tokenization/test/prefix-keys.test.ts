import { RequestKeyHasher } from '@kvix/block-keys';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalTokenizer, LocalTokenizerPool, type ChatMessage, type RequestKeySpec } from '../src/index.js';
import { LocalKeyer, tokenizeLocally } from '../src/pool/tokenize-locally.js';

const MODEL = 'Qwen/Qwen3-0.6B';
const qwen = await LocalTokenizer.bundled(MODEL);

let seed = 5;
function rand(n: number): number {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return (seed >>> 8) % n;
}
const WORDS = 'the shipment parcel was delayed at the warehouse because of a customs hold and the carrier sent a new route'.split(' ');
function text(words: number): string {
  return Array.from({ length: words }, () => WORDS[rand(WORDS.length)]!).join(' ');
}

/** Several conversations that share system prompts, advanced turn by turn in an interleaved order. */
function conversations(count: number, turns: number): ChatMessage[][] {
  const systems = [text(300), text(200)];
  const histories: ChatMessage[][] = Array.from({ length: count }, (_, c) => [{ role: 'system', content: systems[c % 2]! }]);
  const out: ChatMessage[][] = [];
  for (let t = 0; t < turns; t++) {
    for (let c = 0; c < count; c++) {
      const h = histories[c]!;
      h.push({ role: 'user', content: text(20 + rand(60)) });
      out.push([...h]);
      h.push({ role: 'assistant', content: text(10 + rand(50)) });
    }
  }
  return out;
}

describe('request keys computed with the ids, incrementally', () => {
  const specs: { spec: RequestKeySpec; salt: string | null }[] = [
    { spec: { blockSize: 16, seed: '', algorithm: 'cbor-fnv', root: MODEL }, salt: null },
    { spec: { blockSize: 16, seed: '', algorithm: 'cbor-fnv', root: MODEL }, salt: 'tenant-a' },
    { spec: { blockSize: 64, seed: 'x', algorithm: 'xxh64', root: 'my-lora' }, salt: null },
  ];

  it('are exactly the keys hashed from scratch, for every turn of interleaved conversations, salts, roots and hashers', () => {
    const keyer = new LocalKeyer();
    const prompts = conversations(6, 6);
    for (const messages of prompts) {
      for (const { spec, salt } of specs) {
        const { ids, requestKeys } = tokenizeLocally(qwen, { kind: 'chat', messages }, undefined, { spec, cacheSalt: salt, keyer });
        const hasher = new RequestKeyHasher({ blockSize: spec.blockSize, seed: spec.seed, algorithm: spec.algorithm });
        expect(Array.from(requestKeys!)).toEqual(Array.from(hasher.keys(ids, spec.root, salt ? { extras: [[salt]] } : {})));
      }
    }
    // Later turns reused what earlier turns hashed.
    expect(keyer.cache.reusedBlocks).toBeGreaterThan(keyer.cache.hashedBlocks);
  });

  it('stay exact when remembered prompts were evicted and a conversation comes back', () => {
    // Room for a few prompts only: most lookups find theirs gone.
    const keyer = new LocalKeyer(8_000);
    const spec = specs[0]!.spec;
    const hasher = new RequestKeyHasher({ blockSize: 16 });
    const prompts = conversations(20, 3);
    for (let round = 0; round < 2; round++) {
      for (const messages of prompts) {
        const { ids, requestKeys } = tokenizeLocally(qwen, { kind: 'chat', messages }, undefined, { spec, cacheSalt: null, keyer });
        expect(Array.from(requestKeys!)).toEqual(Array.from(hasher.keys(ids, MODEL)));
      }
    }
    expect(keyer.cache.hashedBlocks).toBeGreaterThan(0);
  });

  describe('through the thread pool', () => {
    const pool = new LocalTokenizerPool({ unlisted: 'bundled', workers: 1 });
    afterAll(() => pool.close());

    it('come back with the ids when asked for, and not otherwise', async () => {
      const spec = specs[1]!.spec;
      const hasher = new RequestKeyHasher({ blockSize: 16 });
      for (const messages of conversations(3, 3)) {
        const out = await pool.tokenize(MODEL, { kind: 'chat', messages }, { cacheSalt: 'tenant-a', requestKeys: spec });
        expect(Array.from(out.requestKeys!)).toEqual(Array.from(hasher.keys(out.tokenIds, MODEL, { extras: [['tenant-a']] })));
        expect(out.timings?.hashMs).toBeGreaterThanOrEqual(0);
      }
      expect((await pool.tokenize(MODEL, { kind: 'completion', prompt: 'hello world' })).requestKeys).toBeUndefined();
    });

    it('refuses a malformed key spec', async () => {
      await expect(pool.tokenize(MODEL, { kind: 'completion', prompt: 'hi' }, { requestKeys: { blockSize: 0, seed: '', algorithm: 'cbor-fnv', root: MODEL } })).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    });
  });
});
