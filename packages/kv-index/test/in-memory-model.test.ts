import { describe, expect, it } from 'vitest';
import { InMemoryIndex, entriesAt, type PodEntry } from '../src/index.js';

/** The obvious reference: nested Map/Set keyed by bigint and entry string. */
class ReferenceIndex {
  readonly held = new Map<bigint, Set<string>>();
  readonly engine = new Map<bigint, bigint[]>();

  add(engineKeys: bigint[] | null, requestKeys: bigint[], entries: string[]): void {
    for (const k of requestKeys) {
      let set = this.held.get(k);
      if (!set) this.held.set(k, (set = new Set()));
      for (const e of entries) set.add(e);
    }
    if (engineKeys && engineKeys.length > 0) {
      const n = Math.max(engineKeys.length, requestKeys.length);
      const m = new Map<bigint, bigint[]>();
      for (let i = 0; i < n; i++) {
        const ek = engineKeys[Math.floor((i * engineKeys.length) / n)]!;
        const rk = requestKeys[Math.floor((i * requestKeys.length) / n)]!;
        const list = m.get(ek) ?? [];
        if (list[list.length - 1] !== rk) list.push(rk);
        m.set(ek, list);
      }
      for (const [ek, list] of m) this.engine.set(ek, list);
    }
  }

  evictRequest(key: bigint, entries: string[]): void {
    const set = this.held.get(key);
    if (!set) return;
    for (const e of entries) set.delete(e);
    if (set.size === 0) this.held.delete(key);
  }

  evictEngine(key: bigint, entries: string[]): void {
    const list = this.engine.get(key);
    if (!list) return;
    for (const rk of list) this.evictRequest(rk, entries);
    if (!list.some((rk) => this.held.has(rk))) this.engine.delete(key);
  }

  clear(pod: string): void {
    for (const [k, set] of this.held) {
      for (const e of [...set]) if (e.startsWith(`${pod}/`)) set.delete(e);
      if (set.size === 0) this.held.delete(k);
    }
  }
}

const str = (e: PodEntry): string => `${e.pod}/${e.tier}${e.group === undefined ? '' : `#${e.group}`}`;
const parse = (s: string): PodEntry => {
  const [pod, rest] = s.split('/') as [string, string];
  const [tier, group] = rest.split('#') as [string, string | undefined];
  return group === undefined ? { pod, tier, speculative: false } : { pod, tier, speculative: false, group: Number(group) };
};

describe('in-memory index against a Map/Set reference, under random operations', () => {
  it.each([1, 2, 3])('agrees after 20,000 random operations (seed %i)', async (seed) => {
    let s = seed * 7919;
    const rand = (n: number): number => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return (s >>> 8) % n;
    };
    const index = new InMemoryIndex({ sweepIntervalMs: 0 });
    const ref = new ReferenceIndex();
    const pods = Array.from({ length: 12 }, (_, i) => `10.0.${i}.1:8000`);
    const tiers = ['gpu', 'cpu', 'disk'];
    // A key space larger than the initial capacities, so tables grow and slots are reused.
    const keyOf = (i: number): bigint => BigInt.asUintN(64, 0x9e3779b97f4a7c15n * BigInt(i + 1) + BigInt(seed));
    const randomEntries = (): string[] => {
      const out = new Set<string>();
      const n = 1 + rand(3);
      for (let i = 0; i < n; i++) {
        const group = rand(4) === 0 ? `#${rand(3)}` : '';
        out.add(`${pods[rand(pods.length)]!}/${tiers[rand(tiers.length)]!}${group}`);
      }
      return [...out];
    };
    for (let op = 0; op < 20_000; op++) {
      const kind = rand(100);
      if (kind < 45) {
        const start = rand(6000);
        const r = Array.from({ length: 1 + rand(8) }, (_, i) => keyOf(start + i));
        const ratio = rand(3);
        const eCount = ratio === 0 ? r.length : ratio === 1 ? r.length * 2 : Math.max(1, Math.floor(r.length / 2));
        const e = rand(4) === 0 ? null : Array.from({ length: eCount }, (_, i) => keyOf(100_000 + start * 4 + i));
        const entries = randomEntries();
        ref.add(e, r, entries);
        await index.add(e ? BigUint64Array.from(e) : null, BigUint64Array.from(r), entries.map(parse));
      } else if (kind < 70) {
        const key = keyOf(rand(6000));
        const entries = randomEntries();
        ref.evictRequest(key, entries);
        await index.evict(key, 'request', entries.map(parse));
      } else if (kind < 95) {
        const key = keyOf(100_000 + rand(6000 * 4));
        const entries = randomEntries();
        ref.evictEngine(key, entries);
        await index.evict(key, 'engine', entries.map(parse));
      } else if (kind < 97) {
        const pod = pods[rand(pods.length)]!;
        ref.clear(pod);
        await index.clear(pod);
      } else {
        const start = rand(6000);
        const r = Array.from({ length: 16 }, (_, i) => keyOf(start + i));
        const res = await index.lookup(BigUint64Array.from(r), { earlyStop: false });
        for (let i = 0; i < r.length; i++) {
          expect(entriesAt(res, i).map(str).sort()).toEqual([...(ref.held.get(r[i]!) ?? [])].sort());
        }
      }
    }
    let entries = 0;
    for (const set of ref.held.values()) entries += set.size;
    const stats = await index.stats();
    expect(stats.entries).toBe(entries);
    expect(stats.keys).toBe(ref.held.size);
    for (const [ek, list] of ref.engine) expect(await index.requestKeysFor(ek)).toEqual(list);
    const all = Array.from(ref.held.keys());
    const res = await index.lookup(BigUint64Array.from(all), { earlyStop: false });
    for (let i = 0; i < all.length; i++) expect(entriesAt(res, i).map(str).sort()).toEqual([...ref.held.get(all[i]!)!].sort());
    await index.close();
  });
});
