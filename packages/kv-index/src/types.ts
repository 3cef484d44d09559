/**
 * "Pod P holds request key K in tier T". Identity is the whole tuple: one pod can hold the same
 * key as gpu, as cpu and speculatively at once, and evicting one leaves the others.
 */
export interface PodEntry {
  /** The serving endpoint `address:port`, exactly as the router names endpoints. */
  readonly pod: string;
  /** Lower-case medium: gpu, cpu, disk, storage, … */
  readonly tier: string;
  /** Inserted by a routing decision before the engine confirmed it. */
  readonly speculative: boolean;
  /** KV-cache group of a hybrid model; absent for engines that do not report groups. */
  readonly group?: number;
}

export type KeyKind = 'engine' | 'request';

export interface AddOptions {
  /** Lifetime of speculative entries in this call (default: the index's speculativeTtlMs). */
  ttlMs?: number;
}

export interface LookupOptions {
  /** Only report these pods (the router's candidates). */
  pods?: Iterable<string>;
  /**
   * Stop at the first key where no (candidate) pod can extend a consecutive run from key 0. The
   * keys after it cannot change any longest-prefix score. Default true.
   */
  earlyStop?: boolean;
}

/**
 * Lookup results in columns, so scoring a 128-block prompt against dozens of pods allocates a
 * handful of arrays rather than thousands of objects. Entries of key i are at positions
 * [offsets[i], offsets[i+1]).
 */
export interface LookupResult {
  /** Keys examined, from key 0 (fewer than requested after an early stop). */
  readonly keyCount: number;
  readonly offsets: Uint32Array;
  /** Per entry: index into `pods`. */
  readonly podIndex: Uint32Array;
  /** Per entry: index into `tiers`. */
  readonly tierIndex: Uint8Array;
  /** Per entry: bit 0 speculative, bit 1 has a group. */
  readonly flags: Uint8Array;
  /** Per entry: the group (meaningful when flags bit 1 is set). */
  readonly group: Uint16Array;
  readonly pods: readonly string[];
  readonly tiers: readonly string[];
}

/** Weight of a block by the tier a pod holds it in (configurable; defaults from the spec). */
export interface TierWeights {
  /** Per tier name (lower-case): gpu, cpu, disk, storage, … */
  tiers: Readonly<Record<string, number>>;
  /** A speculative entry (a routing decision not yet confirmed by events). */
  speculative: number;
  /** A tier not listed above. */
  unknown: number;
}

export interface PrefixMatchOptions {
  /** Only these pods (the router's candidates). */
  pods?: Iterable<string>;
  /** Weights of the score (default: the spec's, DEFAULT_TIER_WEIGHTS). */
  weights?: TierWeights;
}

/**
 * Each pod's longest run of the prompt's keys from key 0, weighted by tier, from one walk over the
 * keys — what `scoreLookup(lookup(keys, {pods}), …)` computes, without listing every entry of every
 * key. Pod k of the result (k < podCount) is `pods[podIndex[k]]`; only pods holding key 0 (among the
 * candidates) have a run and are listed, in no particular order. `prefixScores` turns it into
 * sorted PodScore objects.
 */
export interface PrefixMatch {
  /** Keys examined from key 0, as `lookup` with early stop reports them: every run ends within them. */
  readonly keyCount: number;
  readonly podCount: number;
  readonly podIndex: Uint32Array;
  /** Length of each pod's consecutive run from key 0. */
  readonly matchedBlocks: Uint32Array;
  /** Sum over the run of the best tier weight the pod holds each block in. */
  readonly score: Float64Array;
  /**
   * Per pod, `tiers.length + 1` counts: blocks of its run held in tier t (a block held in several
   * groups of a tier counts once); the last slot counts speculative blocks.
   */
  readonly tierBlocks: Uint32Array;
  readonly pods: readonly string[];
  readonly tiers: readonly string[];
}

export const FLAG_SPECULATIVE = 1;
export const FLAG_HAS_GROUP = 2;

export interface PodCounts {
  pod: string;
  entries: number;
  speculative: number;
}

export interface IndexStats {
  backend: string;
  /** (request key, entry) pairs held. */
  entries: number;
  /** Distinct request keys held. */
  keys: number;
  pods: number;
  engineMappings: number;
  /** Bytes of index structures in use (what capacity is measured against). */
  bytesInUse: number;
  /** Bytes the backend has allocated (≥ bytesInUse; typed arrays grow and do not shrink). */
  bytesAllocated: number;
  capacity: { maxEntries: number; maxBytes: number };
  /** Entries dropped because the capacity was reached (least recently used keys first). */
  capacityEvictions: number;
  speculative: { active: number; confirmed: number; expired: number };
}

/** Notifications a backend emits for metrics and analytics (never for control flow). */
export interface IndexObserver {
  admitted?(entries: number): void;
  evicted?(entries: number, cause: 'event' | 'clear' | 'capacity' | 'expiry'): void;
  speculationConfirmed?(pod: string, latencyMs: number): void;
  speculationExpired?(pod: string, count: number): void;
}

/**
 * The index contract. Asynchronous so that a networked backend (Redis) fits behind it; the
 * in-memory backend resolves immediately. Every backend runs the shared conformance suite.
 */
export interface KvBlockIndex {
  readonly backend: string;
  /**
   * Index `entries` under every request key. With engine keys, also record engine → request keys
   * by the ratio rule (n = max(E, R); engine[⌊iE/n⌋] → request[⌊iR/n⌋]). A non-speculative entry
   * confirms (and replaces) a speculative entry of the same pod under the same key.
   */
  add(engineKeys: BigUint64Array | null, requestKeys: BigUint64Array, entries: readonly PodEntry[], options?: AddOptions): Promise<void>;
  /**
   * Remove exactly `entries` under one key; an engine key resolves through the map (to every
   * request key it maps to). The engine mapping is dropped once nothing it maps to is held.
   */
  evict(key: bigint, kind: KeyKind, entries: readonly PodEntry[]): Promise<void>;
  /** The last request key mapped to an engine key (the parent for the next event), if known. */
  requestKeyFor(engineKey: bigint): Promise<bigint | undefined>;
  /** Every request key an engine key maps to, in order (empty if unknown). */
  requestKeysFor(engineKey: bigint): Promise<bigint[]>;
  lookup(requestKeys: BigUint64Array, options?: LookupOptions): Promise<LookupResult>;
  /**
   * Each pod's tier-weighted longest prefix of `requestKeys`, with the side effects of
   * `lookup(requestKeys, {pods})` (the keys examined count as used). The scorer's path: a backend
   * without a faster way answers with `matchPrefixByLookup`.
   */
  matchPrefix(requestKeys: BigUint64Array, options?: PrefixMatchOptions): Promise<PrefixMatch>;
  /** Drop every entry of a pod, in every tier; returns how many entries went. */
  clear(pod: string): Promise<number>;
  stats(): Promise<IndexStats>;
  podCounts(): Promise<PodCounts[]>;
  /** Entries of one pod, paged by request key order of insertion (for dumps and debugging). */
  dumpPod(pod: string, offset: number, limit: number): Promise<{ total: number; items: { key: bigint; entry: PodEntry }[] }>;
  close(): Promise<void>;
}

/**
 * Everything an index really holds (speculative entries excluded: they live seconds and are
 * exchanged separately), in columns, so a replica can be bootstrapped from a peer's state in one
 * copy. Keys are (lo, hi) 32-bit word pairs of the 64-bit request/engine keys.
 */
export interface IndexSnapshot {
  /** Pod names by the ids used in `entryPod`. */
  pods: string[];
  /** Tier names by the ids used in `entryTier`. */
  tiers: string[];
  /** Per entry, 2 words: its request key; least recently used first. */
  entryKeys: Uint32Array;
  entryPod: Uint16Array;
  entryTier: Uint8Array;
  /** The entry's group, or -1 for none. */
  entryGroup: Int16Array;
  /** Per engine key, 2 words. */
  engineKeys: Uint32Array;
  /** Per engine key, how many request keys it maps to (their words follow in `engineTargets`). */
  engineCounts: Uint32Array;
  engineTargets: Uint32Array;
}

/** A backend that can hand its whole state to another process and take one (for replica bootstrap). */
export interface SnapshotCapable {
  exportSnapshot(): IndexSnapshot;
  /** Loads a snapshot into this index (meant for an empty one); returns the entries admitted. */
  importSnapshot(snapshot: IndexSnapshot): number;
}

/** Caller mistakes (bad arguments); stable codes. */
export class IndexError extends Error {
  override readonly name = 'IndexError';
  constructor(
    readonly code: 'INVALID_ENTRY' | 'INVALID_CONFIG' | 'TOO_MANY_PODS' | 'TOO_MANY_TIERS' | 'CLOSED' | 'BACKEND_UNAVAILABLE',
    message: string,
  ) {
    super(message);
  }
}

/** The entries of key i of a lookup, as objects (convenience for tests and dumps; not for hot paths). */
export function entriesAt(result: LookupResult, i: number): PodEntry[] {
  const out: PodEntry[] = [];
  for (let j = result.offsets[i]!; j < result.offsets[i + 1]!; j++) {
    const flags = result.flags[j]!;
    const entry: { pod: string; tier: string; speculative: boolean; group?: number } = {
      pod: result.pods[result.podIndex[j]!]!,
      tier: result.tiers[result.tierIndex[j]!]!,
      speculative: (flags & FLAG_SPECULATIVE) !== 0,
    };
    if (flags & FLAG_HAS_GROUP) entry.group = result.group[j]!;
    out.push(entry);
  }
  return out;
}
