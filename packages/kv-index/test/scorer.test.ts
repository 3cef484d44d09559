import { describe, expect, it } from 'vitest';
import { InMemoryIndex, scoreLookup, tierWeights, type PodEntry } from '../src/index.js';

const keys = (n: number, base = 1n): BigUint64Array => BigUint64Array.from({ length: n }, (_, i) => base * 1000n + BigInt(i));
const e = (pod: string, tier = 'gpu', speculative = false): PodEntry => ({ pod, tier, speculative });

async function indexWith(...adds: [BigUint64Array, PodEntry[]][]): Promise<InMemoryIndex> {
  const index = new InMemoryIndex({ sweepIntervalMs: 0 });
  for (const [k, entries] of adds) await index.add(null, k, entries);
  return index;
}

describe('longest-prefix scorer', () => {
  it('scores only the consecutive run from block 0', async () => {
    const k = keys(6);
    const index = await indexWith([k.subarray(0, 2), [e('a:1')]], [k.subarray(3, 6), [e('a:1')]], [k, [e('b:1')]]);
    const scores = scoreLookup(await index.lookup(k, { earlyStop: false }), 6);
    expect(scores.map((s) => [s.pod, s.matchedBlocks, s.score])).toEqual([
      ['b:1', 6, 6],
      ['a:1', 2, 2],
    ]);
  });

  it('gives a pod that misses block 0 nothing, however much else it holds', async () => {
    const k = keys(4);
    const index = await indexWith([k.subarray(1), [e('a:1')]], [k.subarray(0, 1), [e('b:1')]]);
    expect(scoreLookup(await index.lookup(k, { earlyStop: false }), 4).map((s) => s.pod)).toEqual(['b:1']);
  });

  it('weighs each block by the best tier the pod holds it in, and does not truncate', async () => {
    const k = keys(3);
    const index = await indexWith([k, [e('a:1', 'cpu')]], [k.subarray(0, 1), [e('a:1', 'gpu')]]);
    const [a] = scoreLookup(await index.lookup(k), 3);
    expect(a!.score).toBeCloseTo(1 + 0.8 + 0.8);
    expect(a!.normalized).toBeCloseTo(2.6 / 3);
    expect(a!.tiers).toEqual({ gpu: 1, cpu: 3 });
  });

  it('applies configured weights, including for unknown tiers and speculation', async () => {
    const k = keys(3);
    const index = await indexWith([k.subarray(0, 1), [e('a:1', 'nvme')]], [k.subarray(1), [e('a:1', 'gpu', true)]]);
    const weights = tierWeights({ unknown: 0.25, speculative: 0.5 });
    const [a] = scoreLookup(await index.lookup(k), 3, weights);
    // Block 0 is held in an unknown tier (nvme, 0.25); blocks 1-2 are speculative (0.5).
    expect(a!.score).toBeCloseTo(1.25);
    expect(a!.tiers).toEqual({ nvme: 1, speculative: 2 });
  });

  it('ranks a GPU copy above a CPU copy of the same prefix', async () => {
    const k = keys(4);
    const index = await indexWith([k, [e('gpu-pod:1', 'gpu'), e('cpu-pod:1', 'cpu')]]);
    const scores = scoreLookup(await index.lookup(k), 4);
    expect(scores.map((s) => s.pod)).toEqual(['gpu-pod:1', 'cpu-pod:1']);
    expect(scores[1]!.normalized).toBeCloseTo(0.8);
  });

  it('lists candidate pods holding nothing with a zero score, after the matches', async () => {
    const k = keys(2);
    const index = await indexWith([k, [e('a:1')]]);
    const scores = scoreLookup(await index.lookup(k, { pods: ['z:1', 'a:1', 'y:1'] }), 2, undefined, ['z:1', 'a:1', 'y:1']);
    expect(scores.map((s) => [s.pod, s.score])).toEqual([
      ['a:1', 2],
      ['z:1', 0],
      ['y:1', 0],
    ]);
  });

  it('orders equal scores by pod name, so results are deterministic', async () => {
    const k = keys(2);
    const index = await indexWith([k, [e('c:1'), e('a:1'), e('b:1')]]);
    expect(scoreLookup(await index.lookup(k), 2).map((s) => s.pod)).toEqual(['a:1', 'b:1', 'c:1']);
  });

  it('lists a candidate holding nothing even when an earlier call scored it without listing it', async () => {
    // The first call scores a:1 but lists only b:1; a:1 must not stay marked as "already listed".
    const k = keys(2);
    const index = await indexWith([k, [e('a:1')]]);
    scoreLookup(await index.lookup(k), 2, undefined, ['b:1']);
    const other = keys(2, 9n);
    const scores = scoreLookup(await index.lookup(other, { earlyStop: false }), 2, undefined, ['a:1', 'b:1']);
    expect(scores.map((s) => [s.pod, s.score])).toEqual([
      ['a:1', 0],
      ['b:1', 0],
    ]);
  });

  it('lists each candidate once, whether the index knows it or not, and takes candidates from any iterable', async () => {
    const k = keys(1);
    const index = await indexWith([k, [e('a:1')]]);
    const scores = scoreLookup(await index.lookup(k), 1, undefined, new Set(['z:1', 'a:1']).values());
    expect(scores.map((s) => s.pod)).toEqual(['a:1', 'z:1']);
    expect(scoreLookup(await index.lookup(k), 1, undefined, ['z:1', 'z:1', 'a:1', 'a:1']).map((s) => s.pod)).toEqual(['a:1', 'z:1']);
    // The iterator's marks are gone too: a:1 listed again, alone, comes back.
    expect(scoreLookup(await index.lookup(keys(1, 5n)), 1, undefined, ['a:1']).map((s) => s.pod)).toEqual(['a:1']);
  });

  it('counts blocks per tier, not entries: a block held in two KV-cache groups (or two speculative tiers) counts once', async () => {
    const k = keys(2);
    const index = await indexWith(
      [k, [{ pod: 'a:1', tier: 'gpu', speculative: false, group: 0 }, { pod: 'a:1', tier: 'gpu', speculative: false, group: 1 }]],
      [k, [e('b:1', 'gpu', true), e('b:1', 'cpu', true)]],
    );
    const scores = scoreLookup(await index.lookup(k), 2);
    expect(scores.map((s) => [s.pod, s.matchedBlocks, s.tiers])).toEqual([
      ['a:1', 2, { gpu: 2 }],
      ['b:1', 2, { speculative: 2 }],
    ]);
  });

  it('rejects a negative or non-finite weight', () => {
    expect(() => tierWeights({ tiers: { cpu: -1 } })).toThrow(/cpu/);
    expect(() => tierWeights({ speculative: Number.NaN })).toThrow(/speculative/);
  });

  it('gives the same answer after thousands of calls (scratch state never leaks between calls)', async () => {
    const k = keys(8);
    const index = await indexWith([k, [e('a:1')]], [k.subarray(0, 4), [e('b:1', 'cpu')]]);
    const first = scoreLookup(await index.lookup(k), 8, undefined, ['a:1', 'b:1', 'c:1']);
    for (let i = 0; i < 5000; i++) scoreLookup(await index.lookup(keys(8, BigInt(i % 7) + 2n)), 8);
    expect(scoreLookup(await index.lookup(k), 8, undefined, ['a:1', 'b:1', 'c:1'])).toEqual(first);
  });
});
