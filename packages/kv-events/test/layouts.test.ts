import { encode } from '@msgpack/msgpack';
import { describe, expect, it } from 'vitest';
import { batchToDebugJson, decodeEventBatch, encodeEventBatch, tierOfMedium, type BlockStored } from '../src/index.js';

const pack = (v: unknown): Uint8Array => encode(v, { useBigInt64: true });

const H1 = 0xfedcba9876543210n;
const tokens32 = Array.from({ length: 32 }, (_, i) => 100_000 + i);

/** A BlockStored array of `length` elements (tag included), as each vLLM version sent it. */
function storedArray(length: number): unknown[] {
  const full = ['BlockStored', [H1, 7n], 42n, tokens32, 16, null, 'CPU', 'sql-lora', [['a'], null], 1, 'full_attention', null];
  return full.slice(0, length);
}

describe('BlockStored array layouts across vLLM versions', () => {
  it.each([5, 6, 7, 8, 9, 10, 12])('decodes the %i-element array, missing trailing fields as null', (length) => {
    const batch = decodeEventBatch(pack([1.5, [storedArray(length)], 0]));
    expect(batch.skipped).toEqual([]);
    const ev = batch.events[0] as BlockStored;
    expect(Array.from(ev.blockHashes)).toEqual([H1, 7n]);
    expect(ev.parentBlockHash).toBe(42n);
    expect(Array.from(ev.tokenIds)).toEqual(tokens32);
    expect(ev.blockSize).toBe(16);
    expect(ev.medium).toBe(length > 6 ? 'CPU' : null);
    expect(ev.loraName).toBe(length > 7 ? 'sql-lora' : null);
    expect(ev.extraKeys).toEqual(length > 8 ? [['a'], null] : null);
    expect(ev.groupIdx).toBe(length > 9 ? 1 : null);
    expect(ev.kvCacheSpecKind).toBe(length > 10 ? 'full_attention' : null);
  });

  it('ignores positions past the ones it knows (a newer engine)', () => {
    // Positions 12–15 are vLLM 0.34's (locality, ownership, session_id, lookahead_token_ids).
    const batch = decodeEventBatch(pack([1, [[...storedArray(12), null, null, null, null, 'future', { x: 1 }]], null]));
    expect(batch.skipped).toEqual([]);
    expect((batch.events[0] as BlockStored).kvCacheSpecKind).toBe('full_attention');
  });

  it('skips a 4-element BlockStored (no block_size) with its index and a reason', () => {
    const batch = decodeEventBatch(pack([1, [storedArray(4), storedArray(12)], 0]));
    expect(batch.events).toHaveLength(1);
    expect(batch.skipped).toEqual([{ index: 0, type: 'BlockStored', reason: expect.stringMatching(/at least 5/) }]);
  });
});

describe('batches and events in every layout', () => {
  it('decodes array and map events mixed in one batch', () => {
    const mapEvent = { type: 'BlockRemoved', block_hashes: [H1], medium: 'GPU' };
    const batch = decodeEventBatch(pack([2.25, [storedArray(12), mapEvent, ['AllBlocksCleared'], { type: 'AllBlocksCleared' }], 3]));
    expect(batch.events.map((e) => e.type)).toEqual(['BlockStored', 'BlockRemoved', 'AllBlocksCleared', 'AllBlocksCleared']);
    expect(batch.dataParallelRank).toBe(3);
  });

  it('accepts the 2-element batch of vLLM 0.9 and re-encodes it with 2 elements', () => {
    const payload = pack([7.5, [['AllBlocksCleared']]]);
    const batch = decodeEventBatch(payload);
    expect(batch.dataParallelRank).toBeNull();
    expect(encodeEventBatch(batch)).toEqual(payload);
  });

  it('accepts a map batch defensively', () => {
    const batch = decodeEventBatch(pack({ events: [{ type: 'AllBlocksCleared' }], ts: 9, data_parallel_rank: 1, extra: 'x' }));
    expect(batch).toMatchObject({ ts: 9, dataParallelRank: 1, events: [{ type: 'AllBlocksCleared' }] });
  });

  it('finds the tag of a map event wherever it is and ignores unknown keys', () => {
    const ev = { block_hashes: [1n, 2n], locality: 'rack-7', medium: 'cpu', type: 'BlockRemoved' };
    const batch = decodeEventBatch(pack([0, [ev], null]));
    expect(batch.events[0]).toMatchObject({ type: 'BlockRemoved', medium: 'cpu' });
  });

  it('normalises every hash form to unsigned 64-bit', () => {
    const hashes = [
      5n, // fixint
      300n, // uint16
      -1n, // negative fixint → all ones
      -(2n ** 40n), // int64
      new Uint8Array(32).fill(0xab), // sha256 digest → last 8 bytes
      new Uint8Array([1, 2, 3]), // short bytes → left-padded
    ];
    const ev = decodeEventBatch(pack([0, [['BlockRemoved', hashes]], null])).events[0]!;
    expect(ev.type === 'BlockRemoved' && Array.from(ev.blockHashes)).toEqual([
      5n,
      300n,
      2n ** 64n - 1n,
      2n ** 64n - 2n ** 40n,
      0xababababababababn,
      0x010203n,
    ]);
  });

  it('re-encodes negative-int hashes as negative ints', () => {
    const payload = encode([0.5, [['BlockRemoved', [-5, -(2 ** 40), 9], 'GPU', 0]], 0]);
    expect(encodeEventBatch(decodeEventBatch(payload))).toEqual(payload);
  });

  it('encodes one event in both layouts and decodes each back to the same fields', () => {
    const original = decodeEventBatch(pack([3.5, [storedArray(12)], 0])).events[0] as BlockStored;
    for (const layout of ['array', 'map'] as const) {
      const again = decodeEventBatch(encodeEventBatch({ ts: 3.5, dataParallelRank: 0, events: [original] }, { layout })).events[0] as BlockStored;
      expect(again.encoding?.layout).toBe(layout);
      expect({ ...again, encoding: undefined }).toEqual({ ...original, encoding: undefined });
    }
  });

  it('keeps a map entry named "__proto__" inside extra_keys in the debug view', () => {
    const odd = JSON.parse('{"__proto__":{"x":1},"a":2}') as unknown;
    const batch = decodeEventBatch(pack([1, [['BlockStored', [1n], null, [], 0, null, null, null, [[odd]]]], null]));
    const shown = JSON.parse(JSON.stringify(batchToDebugJson(batch))) as { events: { extraKeys: unknown }[] };
    expect(JSON.stringify(shown.events[0]!.extraKeys)).toBe('[[{"__proto__":{"x":1},"a":2}]]');
  });

  it('lower-cases a medium into a tier, nil meaning gpu', () => {
    expect([tierOfMedium('GPU'), tierOfMedium('cpu'), tierOfMedium('CPU'), tierOfMedium(null), tierOfMedium('STORAGE')]).toEqual(['gpu', 'cpu', 'cpu', 'gpu', 'storage']);
  });
});
