import { afterEach, describe, expect, it } from 'vitest';
import { scoreLookup } from '../scorer.js';
import { entriesAt, type KvBlockIndex, type LookupResult, type PodEntry } from '../types.js';

/** A fresh index under test, with a way to let time pass for its speculative TTLs. */
export interface IndexUnderTest {
  index: KvBlockIndex;
  /** Let `ms` of the index's clock pass (a fake clock advances; a server clock is waited on). */
  advance(ms: number): Promise<void>;
}

export interface ConformanceHarness {
  create(config: { speculativeTtlMs: number; maxEntries?: number }): Promise<IndexUnderTest>;
  /** Whether the backend enforces maxEntries itself (a shared Redis may delegate it to maxmemory). */
  enforcesCapacity: boolean;
}

const keys = (...values: (number | bigint)[]): BigUint64Array => BigUint64Array.from(values.map((v) => BigInt(v)));
const range = (from: number, count: number, base = 0x9e3779b97f4a7c15n): BigUint64Array =>
  BigUint64Array.from({ length: count }, (_, i) => BigInt.asUintN(64, base * BigInt(from + i + 1)));
const gpu = (pod: string): PodEntry => ({ pod, tier: 'gpu', speculative: false });
const cpu = (pod: string): PodEntry => ({ pod, tier: 'cpu', speculative: false });
const spec = (pod: string): PodEntry => ({ pod, tier: 'gpu', speculative: true });

function holders(result: LookupResult, i: number): string[] {
  if (i >= result.keyCount) return [];
  return entriesAt(result, i)
    .map((e) => `${e.pod}/${e.tier}${e.speculative ? '*' : ''}${e.group === undefined ? '' : `#${e.group}`}`)
    .sort();
}

/**
 * The behaviour every index backend must share. Run it from a backend's test file:
 * `runIndexConformance('memory', { create, enforcesCapacity: true })`.
 */
export function runIndexConformance(name: string, harness: ConformanceHarness): void {
  describe(`index conformance: ${name}`, () => {
    const open: KvBlockIndex[] = [];
    const make = async (config: { speculativeTtlMs?: number; maxEntries?: number } = {}): Promise<IndexUnderTest> => {
      const t = await harness.create({ speculativeTtlMs: config.speculativeTtlMs ?? 2000, ...(config.maxEntries ? { maxEntries: config.maxEntries } : {}) });
      open.push(t.index);
      return t;
    };
    afterEach(async () => {
      await Promise.all(open.splice(0).map((i) => i.close()));
    });

    describe('add and lookup', () => {
      it('reports who holds each key, and only the candidate pods when asked', async () => {
        const { index } = await make();
        const k = range(0, 3);
        await index.add(null, k, [gpu('10.0.0.1:8000'), gpu('10.0.0.2:8000')]);
        await index.add(null, k.subarray(0, 1), [gpu('10.0.0.3:8000')]);
        const all = await index.lookup(k, { earlyStop: false });
        expect(holders(all, 0)).toEqual(['10.0.0.1:8000/gpu', '10.0.0.2:8000/gpu', '10.0.0.3:8000/gpu']);
        expect(holders(all, 2)).toEqual(['10.0.0.1:8000/gpu', '10.0.0.2:8000/gpu']);
        const some = await index.lookup(k, { pods: ['10.0.0.2:8000', '10.0.0.9:8000'] });
        expect(holders(some, 0)).toEqual(['10.0.0.2:8000/gpu']);
        expect(holders(some, 2)).toEqual(['10.0.0.2:8000/gpu']);
      });

      it('stops early once no candidate can extend its run from block 0', async () => {
        const { index } = await make();
        const k = range(10, 6);
        await index.add(null, k.subarray(0, 2), [gpu('a:1')]);
        await index.add(null, k.subarray(3, 6), [gpu('a:1')]); // a gap at key 2
        const early = await index.lookup(k);
        expect(early.keyCount).toBe(2);
        const full = await index.lookup(k, { earlyStop: false });
        expect(full.keyCount).toBe(6);
        expect(holders(full, 4)).toEqual(['a:1/gpu']);
        const missingFirst = await index.lookup(range(99, 3));
        expect(missingFirst.keyCount).toBe(0);
      });

      it('holds each full entry once however often it is added', async () => {
        const { index } = await make();
        const k = range(20, 2);
        await index.add(null, k, [gpu('a:1')]);
        await index.add(null, k, [gpu('a:1')]);
        expect(holders(await index.lookup(k), 1)).toEqual(['a:1/gpu']);
        expect((await index.stats()).entries).toBe(2);
      });

      it('keeps one pod\'s gpu, cpu and grouped copies of a key side by side', async () => {
        const { index } = await make();
        const k = range(30, 1);
        await index.add(null, k, [gpu('a:1'), cpu('a:1'), { pod: 'a:1', tier: 'gpu', speculative: false, group: 1 }]);
        expect(holders(await index.lookup(k), 0)).toEqual(['a:1/cpu', 'a:1/gpu', 'a:1/gpu#1']);
      });

      it('rejects an entry without a pod', async () => {
        const { index } = await make();
        await expect(index.add(null, range(1, 1), [{ pod: '', tier: 'gpu', speculative: false }])).rejects.toMatchObject({ code: 'INVALID_ENTRY' });
      });
    });

    describe('engine → request map', () => {
      it('1:1 — each engine key resolves to its request key and evicts only it', async () => {
        const { index } = await make();
        const e = range(100, 3);
        const r = range(200, 3);
        await index.add(e, r, [gpu('a:1')]);
        for (let i = 0; i < 3; i++) expect(await index.requestKeyFor(e[i]!)).toBe(r[i]);
        await index.evict(e[2]!, 'engine', [gpu('a:1')]);
        const res = await index.lookup(r, { earlyStop: false });
        expect([holders(res, 0), holders(res, 1), holders(res, 2)]).toEqual([['a:1/gpu'], ['a:1/gpu'], []]);
      });

      it('many:1 — small engine blocks resolve to the request block containing them', async () => {
        const { index } = await make();
        const e = range(300, 8);
        const r = range(400, 2);
        await index.add(e, r, [gpu('a:1')]);
        expect(await index.requestKeyFor(e[3]!)).toBe(r[0]);
        expect(await index.requestKeyFor(e[7]!)).toBe(r[1]);
        // Losing any engine block of a request block means the request block is not fully held.
        await index.evict(e[5]!, 'engine', [gpu('a:1')]);
        const res = await index.lookup(r, { earlyStop: false });
        expect([holders(res, 0), holders(res, 1)]).toEqual([['a:1/gpu'], []]);
      });

      it('1:many — one large engine block resolves to every request block inside it', async () => {
        const { index } = await make();
        const e = range(500, 2);
        const r = range(600, 8);
        await index.add(e, r, [gpu('a:1')]);
        expect(await index.requestKeyFor(e[0]!)).toBe(r[3]);
        expect(await index.requestKeysFor(e[1]!)).toEqual(Array.from(r.subarray(4)));
        await index.evict(e[1]!, 'engine', [gpu('a:1')]);
        const res = await index.lookup(r, { earlyStop: false });
        expect(res.offsets[4]).toBe(res.offsets[8]);
        expect(holders(res, 3)).toEqual(['a:1/gpu']);
      });

      it('a GPU eviction keeps the CPU copy scoring, and the mapping lives until nothing is held', async () => {
        const { index } = await make();
        const e = range(700, 1);
        const r = range(800, 1);
        await index.add(e, r, [gpu('a:1')]);
        await index.add(null, r, [cpu('a:1')]);
        await index.evict(e[0]!, 'engine', [gpu('a:1')]);
        expect(holders(await index.lookup(r), 0)).toEqual(['a:1/cpu']);
        expect(await index.requestKeyFor(e[0]!)).toBe(r[0]);
        await index.evict(e[0]!, 'engine', [cpu('a:1')]);
        expect((await index.lookup(r)).keyCount).toBe(0);
        expect(await index.requestKeyFor(e[0]!)).toBeUndefined();
      });

      it('keeps the mapping while another pod still holds the block', async () => {
        const { index } = await make();
        const e = range(900, 1);
        const r = range(1000, 1);
        await index.add(e, r, [gpu('a:1')]);
        await index.add(e, r, [gpu('b:1')]);
        await index.evict(e[0]!, 'engine', [gpu('a:1')]);
        expect(await index.requestKeyFor(e[0]!)).toBe(r[0]);
        expect(holders(await index.lookup(r), 0)).toEqual(['b:1/gpu']);
      });

      it('drops the mapping once nothing is held, even when the removal names a pod the index has forgotten', async () => {
        const { index } = await make();
        const e = range(1050, 1);
        const r = range(1060, 1);
        await index.add(e, r, [gpu('a:1')]);
        await index.evict(r[0]!, 'request', [gpu('a:1')]);
        await index.clear('a:1'); // an engine restart: the pod holds nothing and is forgotten
        await index.evict(e[0]!, 'engine', [gpu('a:1')]);
        expect(await index.requestKeyFor(e[0]!)).toBeUndefined();
        expect((await index.stats()).engineMappings).toBe(0);
      });

      it('treats an unknown engine key as nothing to evict', async () => {
        const { index } = await make();
        await index.evict(12345n, 'engine', [gpu('a:1')]);
        expect(await index.requestKeyFor(12345n)).toBeUndefined();
        expect(await index.requestKeysFor(12345n)).toEqual([]);
      });

      it('evicts by request key directly', async () => {
        const { index } = await make();
        const r = range(1100, 2);
        await index.add(null, r, [gpu('a:1'), gpu('b:1')]);
        await index.evict(r[0]!, 'request', [gpu('a:1')]);
        expect(holders(await index.lookup(r), 0)).toEqual(['b:1/gpu']);
      });
    });

    describe('clear', () => {
      it('drops every entry of one pod in every tier and nothing else', async () => {
        const { index } = await make();
        const r = range(1200, 4);
        const e = range(1300, 4);
        await index.add(e, r, [gpu('a:1'), gpu('b:1')]);
        await index.add(null, r.subarray(0, 2), [cpu('a:1')]);
        await index.add(null, range(1250, 2), [spec('a:1')]);
        expect(await index.clear('a:1')).toBe(8);
        const res = await index.lookup(r);
        for (let i = 0; i < 4; i++) expect(holders(res, i)).toEqual(['b:1/gpu']);
        expect(await index.clear('a:1')).toBe(0);
        expect(await index.clear('never-seen:1')).toBe(0);
        const counts = await index.podCounts();
        expect(counts.find((c) => c.pod === 'b:1')?.entries).toBe(4);
        expect(counts.find((c) => c.pod === 'a:1')?.entries ?? 0).toBe(0);
      });

      it('stops counting a pod once everything it held is gone, cleared or not', async () => {
        const { index } = await make();
        const r = range(1450, 1);
        await index.add(null, r, [gpu('a:1'), gpu('b:1')]);
        await index.evict(r[0]!, 'request', [gpu('a:1')]);
        expect((await index.podCounts()).map((c) => c.pod)).toEqual(['b:1']);
        expect((await index.stats()).pods).toBe(1);
      });

      it('lets a cleared pod be indexed again from scratch', async () => {
        const { index } = await make();
        const r = range(1400, 2);
        await index.add(null, r, [gpu('a:1')]);
        await index.clear('a:1');
        await index.add(null, r.subarray(0, 1), [gpu('a:1')]);
        expect(scoreLookup(await index.lookup(r), 2)).toMatchObject([{ pod: 'a:1', matchedBlocks: 1 }]);
      });
    });

    describe('capacity', () => {
      it.runIf(harness.enforcesCapacity)('evicts the least recently used keys past maxEntries', async () => {
        const { index } = await make({ maxEntries: 100 });
        const old = range(1500, 50);
        const hot = range(1600, 40);
        await index.add(null, old, [gpu('a:1')]);
        await index.add(null, hot, [gpu('a:1')]);
        await index.lookup(old.subarray(0, 10)); // use the first 10 old keys again
        await index.add(null, range(1700, 30), [gpu('a:1')]);
        const stats = await index.stats();
        expect(stats.entries).toBeLessThanOrEqual(100);
        expect(stats.capacityEvictions).toBeGreaterThanOrEqual(20);
        expect((await index.lookup(old.subarray(0, 10))).keyCount).toBe(10);
        expect((await index.lookup(old.subarray(10, 11))).keyCount).toBe(0);
      });
    });

    describe('speculative entries', () => {
      it('expire after their TTL unless confirmed', async () => {
        const { index, advance } = await make({ speculativeTtlMs: 300 });
        const r = range(1800, 3);
        await index.add(null, r, [spec('a:1')]);
        expect(holders(await index.lookup(r), 0)).toEqual(['a:1/gpu*']);
        await advance(600);
        expect((await index.lookup(r)).keyCount).toBe(0);
        const s = await index.stats();
        expect(s.speculative).toMatchObject({ active: 0, expired: 3 });
      });

      it('expire on their own TTL even when a longer-lived decision came first', async () => {
        const { index, advance } = await make({ speculativeTtlMs: 300 });
        const long = range(1850, 1);
        const short = range(1860, 1);
        await index.add(null, long, [spec('a:1')], { ttlMs: 60_000 });
        await index.add(null, short, [spec('b:1')], { ttlMs: 300 });
        await advance(600);
        expect((await index.lookup(short)).keyCount).toBe(0);
        expect(holders(await index.lookup(long), 0)).toEqual(['a:1/gpu*']);
        expect((await index.stats()).speculative).toMatchObject({ active: 1, expired: 1 });
      });

      it('live as long as the longest decision: a repeat with a shorter TTL does not cut the first one short', async () => {
        const { index, advance } = await make({ speculativeTtlMs: 300 });
        const r = range(1870, 1);
        await index.add(null, r, [spec('a:1')], { ttlMs: 60_000 });
        await index.add(null, r, [spec('a:1')], { ttlMs: 300 });
        await advance(600);
        expect(holders(await index.lookup(r), 0)).toEqual(['a:1/gpu*']);
        expect((await index.stats()).speculative).toMatchObject({ active: 1, expired: 0 });
      });

      it('once expired, are gone for counts, dumps, removals and clears, not only for lookups', async () => {
        const e = range(1880, 1);
        const r = range(1890, 2);
        // One index per observation: whichever call looks first must not do the others' work.
        const setups = await Promise.all(
          [0, 1, 2, 3].map(async () => {
            const t = await make({ speculativeTtlMs: 300 });
            await t.index.add(e, r.subarray(0, 1), [gpu('b:1')]);
            await t.index.add(null, r, [spec('a:1')]);
            return t;
          }),
        );
        await Promise.all(setups.map((t) => t.advance(600)));
        const [counted, dumped, removed, cleared] = setups.map((t) => t.index) as [KvBlockIndex, KvBlockIndex, KvBlockIndex, KvBlockIndex];
        // No lookup, add or stats call in between: nothing else has had a reason to look at the keys.
        expect((await counted.podCounts()).map((c) => c.pod)).toEqual(['b:1']);
        expect((await dumped.dumpPod('a:1', 0, 10)).total).toBe(0);
        // The expired speculation does not keep the block's engine mapping alive.
        await removed.evict(e[0]!, 'engine', [gpu('b:1')]);
        expect(await removed.requestKeyFor(e[0]!)).toBeUndefined();
        expect(await cleared.clear('a:1')).toBe(0);
        for (const t of setups) expect((await t.index.stats()).speculative).toMatchObject({ active: 0, expired: 2, confirmed: 0 });
      });

      it('are replaced as soon as the real entry arrives, counting a confirmation', async () => {
        const { index, advance } = await make({ speculativeTtlMs: 300 });
        const r = range(1900, 2);
        const e = range(2000, 2);
        await index.add(null, r, [spec('a:1')]);
        await index.add(e.subarray(0, 1), r.subarray(0, 1), [gpu('a:1')]);
        const res = await index.lookup(r);
        expect(holders(res, 0)).toEqual(['a:1/gpu']);
        expect(holders(res, 1)).toEqual(['a:1/gpu*']);
        await advance(600);
        const after = await index.lookup(r);
        expect(holders(after, 0)).toEqual(['a:1/gpu']);
        expect(after.keyCount).toBe(1);
        expect((await index.stats()).speculative).toMatchObject({ confirmed: 1, expired: 1, active: 0 });
      });

      it('are not added for a pod that already really holds the key', async () => {
        const { index } = await make();
        const r = range(2100, 1);
        await index.add(null, r, [gpu('a:1')]);
        await index.add(null, r, [spec('a:1'), spec('b:1')]);
        expect(holders(await index.lookup(r), 0)).toEqual(['a:1/gpu', 'b:1/gpu*']);
      });

      it('stand beside a CPU copy of the same pod (scoring as the GPU copy to come), and only that GPU copy confirms them', async () => {
        const { index } = await make();
        const r = range(2120, 2);
        await index.add(null, r, [cpu('a:1')]);
        await index.add(null, r, [spec('a:1')]);
        expect(holders(await index.lookup(r), 0)).toEqual(['a:1/cpu', 'a:1/gpu*']);
        expect(scoreLookup(await index.lookup(r), 2)).toMatchObject([{ pod: 'a:1', score: 2, tiers: { speculative: 2 } }]);
        // The CPU copy announced again is no news about the decision.
        await index.add(null, r, [cpu('a:1')]);
        expect((await index.stats()).speculative).toMatchObject({ active: 2, confirmed: 0 });
        await index.add(null, r, [gpu('a:1')]);
        expect(holders(await index.lookup(r), 1)).toEqual(['a:1/cpu', 'a:1/gpu']);
        expect((await index.stats()).speculative).toMatchObject({ active: 0, confirmed: 2 });
      });

      it('are confirmed by the engine\'s entry of any KV-cache group (a routing decision knows no group)', async () => {
        // vLLM reports group_idx 0 on every store; a speculation carries no group.
        const { index } = await make();
        const r = range(2150, 2);
        await index.add(null, r, [spec('a:1')]);
        await index.add(null, r, [{ pod: 'a:1', tier: 'gpu', speculative: false, group: 0 }]);
        expect(holders(await index.lookup(r), 0)).toEqual(['a:1/gpu#0']);
        expect((await index.stats()).speculative).toMatchObject({ confirmed: 2, active: 0 });
        await index.add(null, r, [spec('a:1')]);
        expect(holders(await index.lookup(r), 1)).toEqual(['a:1/gpu#0']);
      });

      it('are all confirmed by the one engine entry they stand for: a group-less decision and one naming its group', async () => {
        const { index } = await make();
        const r = range(2170, 1);
        await index.add(null, r, [spec('a:1'), { pod: 'a:1', tier: 'gpu', speculative: true, group: 1 }, { pod: 'a:1', tier: 'gpu', speculative: true, group: 2 }]);
        await index.add(null, r, [{ pod: 'a:1', tier: 'gpu', speculative: false, group: 1 }]);
        // Group 2's decision waits for group 2's entry.
        expect(holders(await index.lookup(r), 0)).toEqual(['a:1/gpu#1', 'a:1/gpu*#2']);
        expect((await index.stats()).speculative).toMatchObject({ active: 1, confirmed: 2 });
      });

      it('score like the real thing until they expire', async () => {
        const { index } = await make();
        const r = range(2200, 4);
        await index.add(null, r, [spec('b:1')]);
        await index.add(null, r.subarray(0, 2), [gpu('a:1')]);
        const scores = scoreLookup(await index.lookup(r), 4);
        expect(scores.map((s) => [s.pod, s.matchedBlocks])).toEqual([
          ['b:1', 4],
          ['a:1', 2],
        ]);
        expect(scores[0]!.tiers).toEqual({ speculative: 4 });
      });
    });

    describe('concurrent use', () => {
      it('converges to the same state as the same operations in sequence', async () => {
        const { index } = await make();
        const pods = ['a:1', 'b:1', 'c:1', 'd:1'];
        const ops: Promise<unknown>[] = [];
        for (let i = 0; i < 200; i++) {
          const pod = pods[i % 4]!;
          const e = range(10_000 + i * 4, 4);
          const r = range(20_000 + (i % 50) * 4, 4);
          ops.push(index.add(e, r, [gpu(pod)]));
          if (i % 3 === 0) ops.push(index.lookup(r));
          if (i % 5 === 0) ops.push(index.evict(e[3]!, 'engine', [gpu(pod)]));
        }
        await Promise.all(ops);
        // Expected: key r(j) for j in 0..49 held by pods i%4 for every i≡j (mod 50), minus the
        // evicted last block of each i divisible by 5.
        for (let j = 0; j < 50; j++) {
          const r = range(20_000 + j * 4, 4);
          const res = await index.lookup(r, { earlyStop: false });
          const want = new Set<string>();
          const wantLast = new Set<string>();
          for (let i = j; i < 200; i += 50) {
            want.add(`${pods[i % 4]!}/gpu`);
            if (i % 5 !== 0) wantLast.add(`${pods[i % 4]!}/gpu`);
          }
          expect(holders(res, 0)).toEqual([...want].sort());
          expect(holders(res, 3)).toEqual([...wantLast].sort());
        }
      });
    });

    describe('stats and dumps', () => {
      it('counts entries, keys and pods, and pages through one pod\'s entries', async () => {
        const { index } = await make();
        const r = range(3000, 10);
        await index.add(range(3100, 10), r, [gpu('a:1')]);
        await index.add(null, r.subarray(0, 3), [gpu('b:1'), spec('c:1')]);
        const s = await index.stats();
        expect(s).toMatchObject({ entries: 16, keys: 10, pods: 3, engineMappings: 10 });
        expect(s.speculative.active).toBe(3);
        const page1 = await index.dumpPod('a:1', 0, 4);
        const page2 = await index.dumpPod('a:1', 4, 100);
        expect(page1.total).toBe(10);
        expect(page1.items).toHaveLength(4);
        expect(page2.items).toHaveLength(6);
        const dumped = new Set([...page1.items, ...page2.items].map((it) => it.key));
        expect(dumped).toEqual(new Set(Array.from(r)));
        expect((await index.dumpPod('zz:1', 0, 10)).total).toBe(0);
      });
    });

    it('accepts keys with the high bit set and key 0', async () => {
      const { index } = await make();
      const r = keys(0n, 0xffffffffffffffffn, 0x8000000000000000n);
      await index.add(keys(1n, 2n, 3n), r, [gpu('a:1')]);
      expect((await index.lookup(r)).keyCount).toBe(3);
      expect(await index.requestKeyFor(2n)).toBe(0xffffffffffffffffn);
    });
  });
}
