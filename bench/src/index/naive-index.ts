import {
  FLAG_HAS_GROUP,
  FLAG_SPECULATIVE,
  matchPrefixByLookup,
  type IndexStats,
  type KeyKind,
  type KvBlockIndex,
  type LookupOptions,
  type LookupResult,
  type PodCounts,
  type PodEntry,
  type PrefixMatch,
  type PrefixMatchOptions,
} from '@kvix/kv-index';

const entryId = (e: PodEntry): string => `${e.tier}|${e.speculative ? 1 : 0}|${e.group ?? ''}`;

/**
 * The straightforward index the benchmarks race against: nested Map/Set keyed by bigint and pod
 * string, engine map as Map<bigint, bigint[]>. Same contract, same applier and scorer on top.
 */
export class NaiveIndex implements KvBlockIndex {
  readonly backend = 'naive';
  private readonly held = new Map<bigint, Map<string, Set<string>>>();
  private readonly engine = new Map<bigint, bigint[]>();

  async add(engineKeys: BigUint64Array | null, requestKeys: BigUint64Array, entries: readonly PodEntry[]): Promise<void> {
    for (const k of requestKeys) {
      let pods = this.held.get(k);
      if (!pods) this.held.set(k, (pods = new Map()));
      for (const e of entries) {
        let tiers = pods.get(e.pod);
        if (!tiers) pods.set(e.pod, (tiers = new Set()));
        tiers.add(entryId(e));
      }
    }
    if (engineKeys && engineKeys.length > 0) {
      const n = Math.max(engineKeys.length, requestKeys.length);
      const mapped = new Map<bigint, bigint[]>();
      for (let i = 0; i < n; i++) {
        const ek = engineKeys[Math.floor((i * engineKeys.length) / n)]!;
        const rk = requestKeys[Math.floor((i * requestKeys.length) / n)]!;
        const list = mapped.get(ek) ?? [];
        if (list[list.length - 1] !== rk) list.push(rk);
        mapped.set(ek, list);
      }
      for (const [ek, list] of mapped) this.engine.set(ek, list);
    }
  }

  async evict(key: bigint, kind: KeyKind, entries: readonly PodEntry[]): Promise<void> {
    const keys = kind === 'request' ? [key] : (this.engine.get(key) ?? []);
    for (const k of keys) {
      const pods = this.held.get(k);
      if (!pods) continue;
      for (const e of entries) {
        const tiers = pods.get(e.pod);
        if (!tiers) continue;
        tiers.delete(entryId(e));
        if (tiers.size === 0) pods.delete(e.pod);
      }
      if (pods.size === 0) this.held.delete(k);
    }
    if (kind === 'engine' && !keys.some((k) => this.held.has(k))) this.engine.delete(key);
  }

  async requestKeyFor(engineKey: bigint): Promise<bigint | undefined> {
    const list = this.engine.get(engineKey);
    return list?.[list.length - 1];
  }

  async requestKeysFor(engineKey: bigint): Promise<bigint[]> {
    return [...(this.engine.get(engineKey) ?? [])];
  }

  async lookup(requestKeys: BigUint64Array, options: LookupOptions = {}): Promise<LookupResult> {
    const candidates = options.pods ? new Set(options.pods) : null;
    const podIds = new Map<string, number>();
    const tierIds = new Map<string, number>();
    const offsets: number[] = [];
    const pod: number[] = [];
    const tier: number[] = [];
    const flags: number[] = [];
    const group: number[] = [];
    const run = new Map<string, number>();
    let keyCount = requestKeys.length;
    for (let i = 0; i < requestKeys.length; i++) {
      offsets.push(pod.length);
      let advanced = false;
      for (const [p, tiers] of this.held.get(requestKeys[i]!) ?? []) {
        if (candidates && !candidates.has(p)) continue;
        if (!podIds.has(p)) podIds.set(p, podIds.size);
        for (const t of tiers) {
          const [tierName, spec, g] = t.split('|') as [string, string, string];
          if (!tierIds.has(tierName)) tierIds.set(tierName, tierIds.size);
          pod.push(podIds.get(p)!);
          tier.push(tierIds.get(tierName)!);
          flags.push((spec === '1' ? FLAG_SPECULATIVE : 0) | (g === '' ? 0 : FLAG_HAS_GROUP));
          group.push(g === '' ? 0 : Number(g));
        }
        if ((run.get(p) ?? 0) === i) {
          run.set(p, i + 1);
          advanced = true;
        }
      }
      if ((options.earlyStop ?? true) && !advanced) {
        keyCount = i;
        pod.length = offsets[i]!;
        break;
      }
    }
    offsets.length = keyCount;
    offsets.push(pod.length);
    return {
      keyCount,
      offsets: Uint32Array.from(offsets),
      podIndex: Uint32Array.from(pod),
      tierIndex: Uint8Array.from(tier),
      flags: Uint8Array.from(flags),
      group: Uint16Array.from(group),
      pods: [...podIds.keys()],
      tiers: [...tierIds.keys()],
    };
  }

  /** The obvious way: the lookup, then scoring its entries. */
  matchPrefix(requestKeys: BigUint64Array, options?: PrefixMatchOptions): Promise<PrefixMatch> {
    return matchPrefixByLookup(this, requestKeys, options);
  }

  async clear(pod: string): Promise<number> {
    let n = 0;
    for (const [k, pods] of this.held) {
      const tiers = pods.get(pod);
      if (!tiers) continue;
      n += tiers.size;
      pods.delete(pod);
      if (pods.size === 0) this.held.delete(k);
    }
    return n;
  }

  async stats(): Promise<IndexStats> {
    let entries = 0;
    const pods = new Set<string>();
    for (const m of this.held.values())
      for (const [p, t] of m) {
        entries += t.size;
        pods.add(p);
      }
    return {
      backend: this.backend,
      entries,
      keys: this.held.size,
      pods: pods.size,
      engineMappings: this.engine.size,
      bytesInUse: 0,
      bytesAllocated: 0,
      capacity: { maxEntries: Infinity, maxBytes: Infinity },
      capacityEvictions: 0,
      speculative: { active: 0, confirmed: 0, expired: 0 },
    };
  }

  async podCounts(): Promise<PodCounts[]> {
    return [];
  }

  async dumpPod(): Promise<{ total: number; items: { key: bigint; entry: PodEntry }[] }> {
    return { total: 0, items: [] };
  }

  async close(): Promise<void> {}
}
