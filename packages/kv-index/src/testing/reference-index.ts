import type { PodEntry } from '../types.js';
import type { PodScore, TierWeights } from '../scorer.js';

/**
 * The index contract as plain maps and sets, written from the spec (index-and-scoring.md, the
 * ratio rule of block-keys.md) and the contract's docs (types.ts), not from any backend: the
 * oracle the random-operation model check compares backends with. Slow on purpose (every rule is
 * a loop anyone can read); synchronous; keys are bigints.
 */

/** An entry's full identity: pod, tier, speculative and group together. */
export function entryId(e: PodEntry): string {
  return `${e.pod}|${e.tier}|${e.speculative ? 's' : 'r'}|${e.group ?? ''}`;
}

export interface HeldEntry {
  readonly entry: PodEntry;
  /** When a speculative entry was first inserted (confirmation latency runs from here). */
  readonly insertedAt: number;
  /** When a speculative entry expires (Infinity for a real one). */
  expiresAt: number;
}

export interface ReferenceLookup {
  keyCount: number;
  /** Per reported key, its (candidate) entries. */
  perKey: PodEntry[][];
}


/**
 * Whether a real entry stands for a speculative one: the same pod and tier, and the speculation
 * names no group (a routing decision knows none) or the same group.
 */
function confirms(real: PodEntry, speculative: PodEntry): boolean {
  return real.pod === speculative.pod && real.tier === speculative.tier && (speculative.group === undefined || speculative.group === real.group);
}

export class ReferenceIndex {
  /** request key → entries by identity. The map's order is the least-recently-used order (oldest first). */
  readonly held = new Map<bigint, Map<string, HeldEntry>>();
  /** engine key → the request keys it maps to, in order. */
  readonly engine = new Map<bigint, bigint[]>();
  entries = 0;
  confirmed = 0;
  expired = 0;
  capacityEvictions = 0;
  admitted = 0;
  readonly evicted = { event: 0, clear: 0, capacity: 0, expiry: 0 };
  /** Confirmations since the caller last drained them: (pod, decision-to-event latency). */
  confirmations: { pod: string; latencyMs: number }[] = [];

  constructor(
    /** Lifetime of a speculative entry added without a TTL of its own. */
    readonly ttlMs: number,
    public now: number,
  ) {}

  /** Lets time pass: speculative entries whose lifetime is over are gone (counted as expired). */
  advance(ms: number): void {
    this.now += ms;
    this.expire();
  }

  private expire(): void {
    for (const [key, set] of [...this.held]) {
      for (const [id, h] of [...set]) {
        if (h.expiresAt <= this.now) {
          this.removeAt(key, set, id);
          this.expired++;
          this.evicted.expiry++;
        }
      }
    }
  }

  /** Marks a key used (the most recently used from now on). */
  private touch(key: bigint): void {
    const set = this.held.get(key);
    if (set === undefined) return;
    this.held.delete(key);
    this.held.set(key, set);
  }

  private removeAt(key: bigint, set: Map<string, HeldEntry>, id: string): void {
    set.delete(id);
    this.entries--;
    if (set.size === 0) this.held.delete(key);
  }

  /** add(): returns the entries admitted. */
  add(engineKeys: readonly bigint[] | null, requestKeys: readonly bigint[], entries: readonly PodEntry[], ttlMs?: number): number {
    if (requestKeys.length === 0 || entries.length === 0) return 0;
    const ttl = ttlMs ?? this.ttlMs;
    let admitted = 0;
    for (const key of requestKeys) {
      let set = this.held.get(key);
      if (set === undefined) this.held.set(key, (set = new Map()));
      else this.touch(key);
      for (const e of entries) admitted += this.addOne(set, e, ttl);
      if (set.size === 0) this.held.delete(key);
    }
    if (engineKeys !== null && engineKeys.length > 0) {
      // Ratio rule: n = max(E, R); engine[⌊iE/n⌋] → request[⌊iR/n⌋]. A re-announced engine key
      // takes its latest mapping.
      const E = engineKeys.length;
      const R = requestKeys.length;
      const n = Math.max(E, R);
      const fresh = new Map<bigint, bigint[]>();
      for (let i = 0; i < n; i++) {
        const ek = engineKeys[Math.floor((i * E) / n)]!;
        const rk = requestKeys[Math.floor((i * R) / n)]!;
        const list = fresh.get(ek) ?? [];
        if (list[list.length - 1] !== rk) list.push(rk);
        fresh.set(ek, list);
      }
      for (const [ek, list] of fresh) this.engine.set(ek, list);
    }
    this.admitted += admitted;
    return admitted;
  }

  private addOne(set: Map<string, HeldEntry>, e: PodEntry, ttl: number): number {
    const id = entryId(e);
    const same = set.get(id);
    if (same !== undefined) {
      // A repeated routing decision extends the speculation's life (never shortens it).
      if (e.speculative) same.expiresAt = Math.max(same.expiresAt, this.now + ttl);
      return 0;
    }
    if (e.speculative) {
      for (const h of set.values()) if (!h.entry.speculative && confirms(h.entry, e)) return 0; // the pod really holds it
      set.set(id, { entry: e, insertedAt: this.now, expiresAt: this.now + ttl });
    } else {
      set.set(id, { entry: e, insertedAt: this.now, expiresAt: Infinity });
      // The engine's entry confirms every speculation it stands for.
      for (const [otherId, h] of [...set]) {
        if (h.entry.speculative && confirms(e, h.entry)) {
          set.delete(otherId);
          this.entries--;
          this.confirmed++;
          this.confirmations.push({ pod: e.pod, latencyMs: this.now - h.insertedAt });
        }
      }
    }
    this.entries++;
    return 1;
  }

  /** evict(): returns the entries removed. */
  evict(key: bigint, kind: 'engine' | 'request', entries: readonly PodEntry[]): number {
    if (entries.length === 0) return 0;
    let removed = 0;
    if (kind === 'request') {
      removed = this.removeEntries(key, entries);
    } else {
      const targets = this.engine.get(key);
      if (targets === undefined) return 0;
      for (const rk of targets) removed += this.removeEntries(rk, entries);
      // The mapping goes once nothing it maps to is held (by anyone, in any tier).
      if (!targets.some((rk) => this.held.has(rk))) this.engine.delete(key);
    }
    this.evicted.event += removed;
    return removed;
  }

  private removeEntries(key: bigint, entries: readonly PodEntry[]): number {
    const set = this.held.get(key);
    if (set === undefined) return 0;
    let removed = 0;
    for (const e of entries) {
      const id = entryId(e);
      if (set.has(id)) {
        this.removeAt(key, set, id);
        removed++;
      }
    }
    return removed;
  }

  clear(pod: string): number {
    let removed = 0;
    for (const [key, set] of [...this.held]) {
      for (const [id, h] of [...set]) {
        if (h.entry.pod === pod) {
          this.removeAt(key, set, id);
          removed++;
        }
      }
    }
    this.evicted.clear += removed;
    return removed;
  }

  requestKeysFor(engineKey: bigint): bigint[] {
    return [...(this.engine.get(engineKey) ?? [])];
  }

  /**
   * lookup(): the entries of each key (of the candidate pods only, when given). With earlyStop,
   * the keys from the first one where no candidate extends a run from key 0 are left out. Every
   * key examined counts as used, the one the lookup stopped at included.
   */
  lookup(keys: readonly bigint[], pods: readonly string[] | undefined, earlyStop: boolean): ReferenceLookup {
    const candidates = pods === undefined ? null : new Set(pods);
    const run = new Map<string, number>();
    const perKey: PodEntry[][] = [];
    for (let i = 0; i < keys.length; i++) {
      this.touch(keys[i]!);
      const set = this.held.get(keys[i]!);
      const here = set === undefined ? [] : [...set.values()].map((h) => h.entry).filter((e) => candidates === null || candidates.has(e.pod));
      let advanced = false;
      for (const e of here) {
        if ((run.get(e.pod) ?? 0) === i) {
          run.set(e.pod, i + 1);
          advanced = true;
        }
      }
      if (earlyStop && !advanced) return { keyCount: i, perKey };
      perKey.push(here);
    }
    return { keyCount: keys.length, perKey };
  }

  /**
   * The spec's longest-prefix score per pod over `perKey` (a full lookup): the consecutive run from
   * block 0, the best tier weight per block, per-tier block counts ("speculative" for unconfirmed
   * blocks; a block counts once per tier however many groups hold it). Ordered by score, then pod;
   * `pods` that hold nothing follow with 0, in the order given.
   */
  static score(perKey: readonly PodEntry[][], totalBlocks: number, weights: TierWeights, pods?: readonly string[]): PodScore[] {
    const out: PodScore[] = [];
    const first = new Set((perKey[0] ?? []).map((e) => e.pod));
    for (const pod of first) {
      let score = 0;
      let matched = 0;
      const tiers: Record<string, number> = {};
      for (const entries of perKey) {
        const mine = entries.filter((e) => e.pod === pod);
        if (mine.length === 0) break;
        score += Math.max(...mine.map((e) => (e.speculative ? weights.speculative : (weights.tiers[e.tier] ?? weights.unknown))));
        matched++;
        for (const label of new Set(mine.map((e) => (e.speculative ? 'speculative' : e.tier)))) tiers[label] = (tiers[label] ?? 0) + 1;
      }
      out.push({ pod, score, normalized: totalBlocks > 0 ? score / totalBlocks : 0, matchedBlocks: matched, totalBlocks, tiers });
    }
    out.sort((a, b) => b.score - a.score || (a.pod < b.pod ? -1 : a.pod > b.pod ? 1 : 0));
    if (pods !== undefined) {
      const listed = new Set(out.map((s) => s.pod));
      for (const pod of pods) {
        if (listed.has(pod)) continue;
        listed.add(pod);
        out.push({ pod, score: 0, normalized: 0, matchedBlocks: 0, totalBlocks, tiers: {} });
      }
    }
    return out;
  }

  /**
   * Capacity eviction as the spec has it: whole least-recently-used keys go first. Evicts until at
   * most `entries` remain; returns false when that count is not reachable by whole keys.
   */
  evictLeastRecentlyUsed(entries: number): boolean {
    while (this.entries > entries) {
      const [key, set] = this.held.entries().next().value as [bigint, Map<string, HeldEntry>];
      this.held.delete(key);
      this.entries -= set.size;
      this.capacityEvictions += set.size;
      this.evicted.capacity += set.size;
    }
    return this.entries === entries;
  }

  /** Per pod holding anything: entries and how many of them are speculative. */
  podCounts(): Map<string, { entries: number; speculative: number }> {
    const out = new Map<string, { entries: number; speculative: number }>();
    for (const set of this.held.values()) {
      for (const h of set.values()) {
        const c = out.get(h.entry.pod) ?? { entries: 0, speculative: 0 };
        c.entries++;
        if (h.entry.speculative) c.speculative++;
        out.set(h.entry.pod, c);
      }
    }
    return out;
  }

  /** One pod's (key, entry id) pairs. */
  pairsOf(pod: string): string[] {
    const out: string[] = [];
    for (const [key, set] of this.held) for (const [id, h] of set) if (h.entry.pod === pod) out.push(`${key}/${id}`);
    return out;
  }

  get speculativeActive(): number {
    let n = 0;
    for (const set of this.held.values()) for (const h of set.values()) if (h.entry.speculative) n++;
    return n;
  }

  /**
   * What a replica bootstrapped from this index's snapshot holds: the real entries, in the same
   * least-recently-used order, the same engine map, and fresh counters.
   */
  replicaOf(): ReferenceIndex {
    const replica = new ReferenceIndex(this.ttlMs, this.now);
    for (const [key, set] of this.held) {
      const kept = new Map([...set].filter(([, h]) => !h.entry.speculative));
      if (kept.size === 0) continue;
      replica.held.set(key, kept);
      replica.entries += kept.size;
    }
    for (const [ek, list] of this.engine) replica.engine.set(ek, [...list]);
    replica.admitted = replica.entries;
    return replica;
  }
}
