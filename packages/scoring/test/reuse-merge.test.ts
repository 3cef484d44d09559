import { deserialize, serialize } from 'node:v8';
import type { PodScore } from '@kvix/kv-index';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mergeReuseStates, mergeSpaceSaving, reuseSnapshot, ReuseAnalytics, SpaceSaving, type ReuseState } from '../src/index.js';

const BLOCK = 4;

/** A deterministic stream of requests: a few shared system prompts, each continued by its own tail. */
function requests(n: number, seed = 11): { model: string; keys: BigUint64Array; pod: string; matched: number; tiers: Record<string, number> }[] {
  let s = seed;
  const rand = (): number => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  return Array.from({ length: n }, (_, i) => {
    const shared = Math.floor(rand() * 4);
    const length = 4 + Math.floor(rand() * 12);
    const keys = BigUint64Array.from({ length }, (_, d) => (d < 3 ? BigInt(1000 * (shared + 1) + d) : BigInt(1_000_000 + i * 100 + d)));
    const matched = Math.floor(rand() * (length + 1));
    const gpu = Math.min(matched, 2);
    return { model: rand() < 0.7 ? 'm-a' : 'm-b', keys, pod: `pod-${Math.floor(rand() * 3)}`, matched, tiers: { ...(gpu > 0 ? { gpu } : {}), ...(matched > gpu ? { cpu: matched - gpu } : {}) } };
  });
}

function feed(analytics: ReuseAnalytics, r: ReturnType<typeof requests>[number]): void {
  const best: PodScore | undefined = r.matched > 0 ? { pod: r.pod, score: r.matched, normalized: r.matched / r.keys.length, matchedBlocks: r.matched, totalBlocks: r.keys.length, tiers: r.tiers } : undefined;
  analytics.observeScore(r.model, r.keys, best, () => `prompt ${r.keys[0]}`);
  analytics.observeDecision(r.model, r.pod, 'decode', best, r.keys.length);
}

/** What crosses the cluster channel: Node's "advanced" serialization is v8's structured clone. */
const overIpc = (state: ReuseState): ReuseState => deserialize(serialize(state)) as ReuseState;

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['Date'], now: new Date('2025-01-02T03:04:05Z') });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('merging reuse analytics of several processes', () => {
  it('gives exactly the snapshot of one process that saw every request, while no sketch is full', () => {
    const all = new ReuseAnalytics(BLOCK);
    const parts = [new ReuseAnalytics(BLOCK), new ReuseAnalytics(BLOCK), new ReuseAnalytics(BLOCK)];
    for (const [i, r] of requests(300).entries()) {
      vi.advanceTimersByTime(1);
      feed(all, r);
      feed(parts[i % 3]!, r);
    }
    const merged = mergeReuseStates(
      parts.map((p) => overIpc(p.state({ prefixes: true }))),
      BLOCK,
    );
    const expected = all.snapshot(20);
    const got = reuseSnapshot(merged, 20);
    expect(got.topPrefixes.length).toBeGreaterThan(0);
    // Plain objects for the comparison (the merged records have no prototype); the means' sums of
    // per-request ratios add in another order, so they agree to rounding.
    const plain = (v: unknown): unknown => JSON.parse(JSON.stringify(v, (k, x: unknown) => (k === 'meanRequestHitRatio' ? Number((x as number).toFixed(12)) : x)));
    expect(plain(got)).toEqual(plain(expected));
  });

  it('adds every count and takes ratios after the sums, with the earliest start', () => {
    const a = new ReuseAnalytics(BLOCK);
    vi.advanceTimersByTime(60_000);
    const b = new ReuseAnalytics(BLOCK);
    const held = (matched: number, tiers: Record<string, number>): PodScore => ({ pod: 'p', score: matched, normalized: matched / 4, matchedBlocks: matched, totalBlocks: 4, tiers });
    a.observeDecision('m', 'p', 'decode', held(4, { gpu: 4 }), 4);
    b.observeDecision('m', 'p', 'decode', held(0, {}), 4);
    b.observeDecision('m', 'p', 'decode', held(2, { cpu: 2 }), 4);
    b.observeDecision('m', 'p', 'prefill', held(2, { cpu: 2 }), 4);
    const snap = reuseSnapshot(mergeReuseStates([a.state({ prefixes: false }), b.state({ prefixes: false })], BLOCK), 20);
    expect(snap.since).toBe(a.snapshot().since);
    expect(snap.routing.decisions).toBe(3);
    expect({ ...snap.routing.byPod['p'] }).toEqual({ requests: 3, blocks: 12, hitBlocks: 6, blockHitRatio: 0.5, meanRequestHitRatio: (1 + 0 + 0.5) / 3, tiers: { gpu: 4, cpu: 2 } });
    expect(snap.topPrefixes).toEqual([]);
  });

  it('reads as an empty snapshot when no process answered, and refuses states of another block size', () => {
    const empty = reuseSnapshot(mergeReuseStates([], BLOCK), 10);
    expect(empty).toMatchObject({ scoring: { requests: 0 }, routing: { decisions: 0 }, topPrefixes: [] });
    expect(() => mergeReuseStates([new ReuseAnalytics(16).state({ prefixes: false })], BLOCK)).toThrow(RangeError);
  });

  it('keeps a model or pod named __proto__ as a key like any other', () => {
    const a = new ReuseAnalytics(BLOCK);
    a.observeDecision('__proto__', '__proto__', 'decode', undefined, 4);
    const snap = reuseSnapshot(mergeReuseStates([a.state({ prefixes: false }), a.state({ prefixes: false })], BLOCK), 5);
    expect(Object.keys(snap.routing.byPod)).toEqual(['__proto__']);
    expect(snap.routing.byPod['__proto__']!.requests).toBe(2);
    expect(({} as Record<string, unknown>)['requests']).toBeUndefined();
  });
});

describe('merging Space-Saving sketches of disjoint streams', () => {
  it('keeps every item more frequent than N/capacity of the whole stream, with counts that bracket the truth, once every sketch is full', () => {
    const sketches = [new SpaceSaving<null>(50), new SpaceSaving<null>(50), new SpaceSaving<null>(50)];
    const truth = new Map<bigint, number>();
    let seed = 3;
    const rand = (): number => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
    for (let i = 0; i < 30_000; i++) {
      const key = rand() < 0.5 ? BigInt(Math.floor(rand() * 12)) : 1000n + BigInt(Math.floor(rand() * 8000));
      truth.set(key, (truth.get(key) ?? 0) + 1);
      // Not split evenly: one process takes half of the requests.
      sketches[rand() < 0.5 ? 0 : 1 + Math.floor(rand() * 2)]!.add(key, () => null);
    }
    const states = sketches.map((s) => s.state((v) => v));
    expect(states.every((s) => s.unlistedBound > 0)).toBe(true);
    const merged = mergeSpaceSaving(states, (a) => a);
    expect(merged.observed).toBe(30_000);
    const listed = new Map(merged.items.map((h) => [h.key, h]));
    for (const [key, count] of truth) {
      const held = listed.get(key);
      if (count > merged.unlistedBound) expect(held, `key ${key} (${count} times) must be listed`).toBeDefined();
      if (!held) continue;
      expect(held.count).toBeGreaterThanOrEqual(count);
      expect(held.count - held.error).toBeLessThanOrEqual(count);
    }
    expect(merged.unlistedBound).toBeLessThanOrEqual(30_000 / 50);
    expect(
      merged.items
        .slice(0, 12)
        .map((h) => h.key)
        .sort((a, b) => Number(a - b)),
    ).toEqual(Array.from({ length: 12 }, (_, i) => BigInt(i)));
  });
});
