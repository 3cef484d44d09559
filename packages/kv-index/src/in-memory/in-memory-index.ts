import { EntryCodec, MAX_PODS, isSpeculativeCode, podOf } from '../entry-codes.js';
import {
  IndexError,
  type AddOptions,
  type IndexObserver,
  type IndexSnapshot,
  type IndexStats,
  type KeyKind,
  type KvBlockIndex,
  type LookupOptions,
  type LookupResult,
  type PodCounts,
  type PodEntry,
  type PrefixMatch,
  type PrefixMatchOptions,
  type SnapshotCapable,
} from '../types.js';
import { CandidatePods } from './candidate-pods.js';
import { EngineMap } from './engine-map.js';
import { EMPTY_SET, EntrySets, SET_BYTES, type AddTransition } from './entry-sets.js';
import { KEY_BYTES, KeyTable, NONE } from './key-table.js';
import { PrefixWalks } from './prefix-walks.js';
import { exportSnapshot, importSnapshot } from './snapshot.js';
import { TIMED_ENTRY_BYTES, TimedEntries } from './timed-entries.js';
import { WordViews } from './word-views.js';

export interface InMemoryIndexConfig {
  /** Most (request key, entry) pairs held; least recently used keys go first. Default 20 M. */
  maxEntries?: number;
  /** Most bytes of index structures in use (see IndexStats.bytesInUse). Default 2 GiB. */
  maxBytes?: number;
  /** Most engine → request mappings kept. Default: maxEntries. */
  maxEngineMappings?: number;
  /** Lifetime of speculative entries unless confirmed first. Default 2000 ms (llm-d's). */
  speculativeTtlMs?: number;
  /** How often expired speculative entries are swept when the index is idle. Default 250 ms; 0 = only on use. */
  sweepIntervalMs?: number;
  /** Clock in milliseconds (tests inject one). */
  now?: () => number;
  observer?: IndexObserver;
}

/** Fraction of the limit kept after a capacity eviction, so evictions come in batches. */
const CAPACITY_LOW_WATER = 0.98;

export const DEFAULT_MAX_ENTRIES = 20_000_000;
export const DEFAULT_MAX_BYTES = 2 * 2 ** 30;
export const DEFAULT_SPECULATIVE_TTL_MS = 2000;

/**
 * The in-memory index, with no JS object per key or entry:
 *
 * - KeyTable: one record per request key (64-bit key, successor hint, least-recently-used links)
 *   behind an open-addressing slot table.
 * - EntrySets: a key's entries are one interned set of 32-bit entry codes (pod, tier,
 *   speculative, group), shared by every key holding exactly those entries, with the list of its
 *   keys (which makes clear(pod) proportional to the pod's entries).
 * - TimedEntries: insertion and expiry times of speculative entries, and their expiry heap.
 * - EngineMap: engine key → request key(s).
 * - PrefixWalks: lookups and prefix matches walk a prompt's keys, not probe them: key 0 is hashed,
 *   each later key is compared with the record after its predecessor's, and consecutive keys
 *   holding the same set form a run whose pods, depths and tiers are accounted once.
 *
 * This class keeps the contract and the accounting: entries per pod, speculation outcomes,
 * expiry, capacity. About 47 bytes per key and nothing per entry beyond its share of a set, plus
 * ~23 per engine mapping.
 */
export class InMemoryIndex implements KvBlockIndex, SnapshotCapable {
  readonly backend = 'memory';
  private readonly codec = new EntryCodec();
  private readonly maxEntries: number;
  private readonly maxBytes: number;
  private readonly ttlMs: number;
  private readonly now: () => number;
  private readonly observer: IndexObserver | undefined;
  private readonly keys: KeyTable;
  private readonly sets: EntrySets;
  private readonly timed = new TimedEntries();
  private readonly engineMap: EngineMap;
  private readonly walks: PrefixWalks;
  private readonly candidates = new CandidatePods();
  /** The codes of a one-entry add (every BlockStored), without an array per call. */
  private readonly oneCode: number[] = [0];
  private readonly requestWords = new WordViews();
  private readonly engineWords = new WordViews();
  private sweepTimer: NodeJS.Timeout | undefined;
  private closed = false;

  private entries = 0;
  private readonly podEntries = new Int32Array(MAX_PODS);
  private readonly podSpeculative = new Int32Array(MAX_PODS);
  private speculativeActive = 0;
  private confirmed = 0;
  private expired = 0;
  private capacityEvictions = 0;

  /** Pod names by id, rebuilt only when pods come or go (results share it read-only). */
  private podTableCache: readonly string[] | null = null;
  private podTableVersion = -1;

  constructor(config: InMemoryIndexConfig = {}) {
    this.maxEntries = positive(config.maxEntries ?? DEFAULT_MAX_ENTRIES, 'maxEntries');
    this.maxBytes = positive(config.maxBytes ?? DEFAULT_MAX_BYTES, 'maxBytes');
    this.ttlMs = positive(config.speculativeTtlMs ?? DEFAULT_SPECULATIVE_TTL_MS, 'speculativeTtlMs');
    this.now = config.now ?? (() => performance.timeOrigin + performance.now());
    this.observer = config.observer;
    // Every key holds at least one entry, so records never outnumber entries.
    this.keys = new KeyTable(this.maxEntries, (capacity) => this.sets.growRecords(capacity));
    this.sets = new EntrySets(this.keys.capacity);
    this.walks = new PrefixWalks(this.keys, this.sets, this.codec, this.candidates);
    this.engineMap = new EngineMap(positive(config.maxEngineMappings ?? this.maxEntries, 'maxEngineMappings'), (lo, hi) => this.keys.find(lo, hi) >= 0);
    const sweepMs = config.sweepIntervalMs ?? 250;
    if (sweepMs > 0) {
      this.sweepTimer = setInterval(() => this.sweepExpired(), sweepMs);
      this.sweepTimer.unref();
    }
  }

  // ---- contract ------------------------------------------------------------------------------

  async add(engineKeys: BigUint64Array | null, requestKeys: BigUint64Array, entries: readonly PodEntry[], options?: AddOptions): Promise<void> {
    this.addSync(engineKeys, requestKeys, entries, options);
  }

  /**
   * Synchronous add, for the event applier's hot path (the async contract wraps it). One pass over
   * the keys and no allocation per key: each key is found by its predecessor's record (the next
   * record, or its hint) or one probe, or created in the slot that probe found, and moves to the
   * set it holds afterwards through a transition looked up once per run of keys sharing a set.
   */
  addSync(engineKeys: BigUint64Array | null, requestKeys: BigUint64Array, entries: readonly PodEntry[], options?: AddOptions): void {
    this.checkOpen();
    const n = requestKeys.length;
    if (n === 0 || entries.length === 0) return;
    let codes = this.oneCode;
    if (entries.length === 1) codes[0] = this.codec.encode(validEntry(entries[0]!), true);
    else codes = entries.map((e) => this.codec.encode(validEntry(e), true));
    const timed = codes.some(isSpeculativeCode);
    // The clock is read only when something has a lifetime (a speculation now or pending).
    const now = timed || this.timed.nextExpiry !== Infinity ? this.now() : 0;
    this.sweepExpired(now);
    const ttl = options?.ttlMs ?? this.ttlMs;
    const words = this.requestWords.of(requestKeys);
    const base = this.requestWords.base;
    const keys = this.keys;
    const sets = this.sets;
    keys.reserve(n);
    keys.prefetch(words, base, n);
    // One real entry (a BlockStored): its transitions carry no timing, and repeat along a run.
    const plain = codes.length === 1 && !timed ? codes[0]! : -1;
    let lastFrom = -1;
    let lastTransition: AddTransition | null = null;
    let plainAdmitted = 0;
    let admitted = 0;
    let prev = NONE;
    for (let i = 0; i < n; i++) {
      const lo = words[base + 2 * i]!;
      const hi = words[base + 2 * i + 1]!;
      let r = NONE;
      if (prev !== NONE) {
        const kw = keys.kw;
        if (kw[2 * prev + 2] === lo && kw[2 * prev + 3] === hi && keys.set[prev + 1]! >= 0) r = prev + 1;
        else {
          const c = keys.child[prev]!;
          if (c >= 0 && kw[2 * c] === lo && kw[2 * c + 1] === hi && keys.set[c]! >= 0) r = c;
        }
      }
      if (r === NONE) {
        const found = keys.probe(lo, hi);
        if (found >= 0) {
          r = found;
          keys.touch(r);
        } else {
          r = keys.insertAt(-2 - found, lo, hi);
          keys.touchNew(r);
        }
      } else {
        keys.touch(r);
      }
      const from = keys.set[r]!;
      if (plain >= 0) {
        if (from !== lastFrom) {
          lastFrom = from;
          lastTransition = sets.add(from, plain);
        }
        const t = lastTransition!;
        if (t.confirms === null) {
          plainAdmitted += t.admitted;
          if (t.to !== from) {
            if (from !== EMPTY_SET) sets.leave(r, from);
            sets.join(r, t.to);
            keys.set[r] = t.to;
          }
        } else {
          admitted += this.applyCodes(r, codes, now, ttl);
        }
      } else {
        admitted += this.applyCodes(r, codes, now, ttl);
      }
      if (prev !== NONE) keys.child[prev] = r;
      prev = r;
    }
    keys.flushTouches();
    if (plainAdmitted > 0) {
      this.entries += plainAdmitted;
      this.podEntries[podOf(plain)]! += plainAdmitted;
      admitted += plainAdmitted;
    }
    if (timed) this.timed.schedule({ words: words.slice(base, base + 2 * n), codes: codes.filter(isSpeculativeCode) }, now + ttl);
    if (engineKeys !== null && engineKeys.length > 0) this.mapEngineKeys(engineKeys, words, base >> 1, n);
    if (admitted > 0) this.observer?.admitted?.(admitted);
    this.enforceCapacity();
    this.sets.collect();
  }

  async evict(key: bigint, kind: KeyKind, entries: readonly PodEntry[]): Promise<void> {
    this.evictSync(key, kind, entries);
  }

  /** Returns how many entries were removed. */
  evictSync(key: bigint, kind: KeyKind, entries: readonly PodEntry[]): number {
    this.checkOpen();
    if (entries.length === 0) return 0;
    // An expired speculation is gone before anything else looks: it must not keep a mapping alive
    // or count as removed by this event.
    this.sweepExpired();
    const codes = entries.map((e) => this.codec.encode(validEntry(e), false)).filter((c) => c >= 0);
    const lo = Number(key & 0xffffffffn);
    const hi = Number(key >> 32n);
    let removed = 0;
    if (kind === 'request') {
      if (codes.length > 0) removed = this.removeCodes(this.keys.find(lo, hi), codes);
    } else {
      // Entries of a pod this index no longer knows (cleared) remove nothing, but the mapping still
      // goes once nothing it maps to is held, as for any other removal.
      let stillHeld = false;
      const mapped = this.engineMap.forEach(lo, hi, (rLo, rHi) => {
        if (codes.length > 0) removed += this.removeCodes(this.keys.find(rLo, rHi), codes);
        if (this.keys.find(rLo, rHi) >= 0) stillHeld = true;
      });
      if (mapped > 0 && !stillHeld) this.engineMap.delete(lo, hi);
    }
    if (removed > 0) this.observer?.evicted?.(removed, 'event');
    this.sets.collect();
    return removed;
  }

  async requestKeyFor(engineKey: bigint): Promise<bigint | undefined> {
    return this.requestKeyForSync(engineKey);
  }

  requestKeyForSync(engineKey: bigint): bigint | undefined {
    return this.engineMap.last(Number(engineKey & 0xffffffffn), Number(engineKey >> 32n));
  }

  async requestKeysFor(engineKey: bigint): Promise<bigint[]> {
    const out: bigint[] = [];
    this.engineMap.forEach(Number(engineKey & 0xffffffffn), Number(engineKey >> 32n), (lo, hi) => out.push((BigInt(hi) << 32n) | BigInt(lo)));
    return out;
  }

  async lookup(requestKeys: BigUint64Array, options: LookupOptions = {}): Promise<LookupResult> {
    return this.lookupSync(requestKeys, options);
  }

  /** Entries per key, in columns; a run of keys holding one set is expanded from that set once. */
  lookupSync(requestKeys: BigUint64Array, options: LookupOptions = {}): LookupResult {
    this.checkOpen();
    this.sweepExpired();
    const words = this.requestWords.of(requestKeys);
    return this.walks.lookup(words, this.requestWords.base, requestKeys.length, options, this.podTable());
  }

  async matchPrefix(requestKeys: BigUint64Array, options: PrefixMatchOptions = {}): Promise<PrefixMatch> {
    return this.matchPrefixSync(requestKeys, options);
  }

  /**
   * Each pod's tier-weighted run from key 0 in one walk over the keys (see PrefixWalks): per key,
   * a compare with the successor record, a set-id compare and an LRU-adjacency compare; per run of
   * keys holding the same set, the set's pods that are still running advance by the run's length
   * with their best tier weight and their tiers. It stops exactly where `lookup` stops early and
   * touches the same keys.
   */
  matchPrefixSync(requestKeys: BigUint64Array, options: PrefixMatchOptions = {}): PrefixMatch {
    this.checkOpen();
    this.sweepExpired();
    const words = this.requestWords.of(requestKeys);
    return this.walks.match(words, this.requestWords.base, requestKeys.length, options, this.podTable());
  }

  async clear(pod: string): Promise<number> {
    return this.clearSync(pod);
  }

  /** Every set naming the pod moves its whole key list to the same set without the pod. */
  clearSync(pod: string): number {
    this.checkOpen();
    // Expired speculation counts as expired, not as cleared.
    this.sweepExpired();
    const id = this.codec.podId(pod, false);
    if (id < 0) return 0;
    const sets = this.sets;
    let removed = 0;
    for (const s of sets.setsOfPod(id)) {
      const held = sets.refs[s]!;
      if (held === 0) continue;
      const mine = sets.codes[s]!.filter((c) => podOf(c) === id);
      const timed = mine.filter(isSpeculativeCode);
      const to = sets.withoutPod(s, id);
      for (let r = sets.head[s]!; r !== NONE; ) {
        const next = sets.memNext[r]!;
        for (const c of timed) this.timed.delete(r, c);
        if (to === EMPTY_SET) {
          sets.leave(r, s);
          this.freeRecord(r);
        } else {
          this.keys.set[r] = to;
        }
        r = next;
      }
      if (to !== EMPTY_SET) sets.moveAll(s, to);
      removed += held * mine.length;
      this.entries -= held * mine.length;
      this.speculativeActive -= held * timed.length;
    }
    this.podEntries[id] = 0;
    this.podSpeculative[id] = 0;
    this.codec.releasePod(id);
    if (removed > 0) this.observer?.evicted?.(removed, 'clear');
    this.sets.collect();
    return removed;
  }

  async stats(): Promise<IndexStats> {
    this.sweepExpired();
    return {
      backend: this.backend,
      entries: this.entries,
      keys: this.keys.inUse,
      pods: this.podsHolding(),
      engineMappings: this.engineMap.size,
      bytesInUse: this.bytesInUse(),
      bytesAllocated: this.bytesAllocated(),
      capacity: { maxEntries: this.maxEntries, maxBytes: this.maxBytes },
      capacityEvictions: this.capacityEvictions,
      speculative: { active: this.speculativeActive, confirmed: this.confirmed, expired: this.expired },
    };
  }

  /**
   * Pods holding anything. A pod whose entries all went by removal, expiry or capacity keeps its
   * id until clear(pod), but is not listed (as no Redis counter is left for it either).
   */
  async podCounts(): Promise<PodCounts[]> {
    this.sweepExpired();
    const out: PodCounts[] = [];
    this.codec.podNames.forEach((name, id) => {
      if (name !== undefined && this.podEntries[id]! > 0) out.push({ pod: name, entries: this.podEntries[id]!, speculative: this.podSpeculative[id]! });
    });
    return out;
  }

  private podsHolding(): number {
    let n = 0;
    this.codec.podNames.forEach((name, id) => {
      if (name !== undefined && this.podEntries[id]! > 0) n++;
    });
    return n;
  }

  async dumpPod(pod: string, offset: number, limit: number): Promise<{ total: number; items: { key: bigint; entry: PodEntry }[] }> {
    this.sweepExpired();
    const id = this.codec.podId(pod, false);
    if (id < 0) return { total: 0, items: [] };
    const items: { key: bigint; entry: PodEntry }[] = [];
    let i = 0;
    const sets = this.sets;
    for (const s of sets.setsOfPod(id)) {
      if (sets.refs[s] === 0) continue;
      const mine = sets.codes[s]!.filter((c) => podOf(c) === id);
      for (let r = sets.head[s]!; r !== NONE; r = sets.memNext[r]!) {
        for (const c of mine) {
          if (i++ < offset) continue;
          if (items.length === limit) return { total: this.podEntries[id]!, items };
          items.push({ key: (BigInt(this.keys.kw[2 * r + 1]!) << 32n) | BigInt(this.keys.kw[2 * r]!), entry: this.codec.decode(c) });
        }
      }
    }
    return { total: this.podEntries[id]!, items };
  }

  async close(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    this.closed = true;
  }

  // ---- snapshots -----------------------------------------------------------------------------

  exportSnapshot(): IndexSnapshot {
    this.checkOpen();
    return exportSnapshot(this.keys, this.sets, this.entries - this.speculativeActive, this.codec, this.engineMap);
  }

  importSnapshot(snapshot: IndexSnapshot): number {
    this.checkOpen();
    const now = this.now();
    const admitted = importSnapshot(snapshot, this.codec, this.engineMap, (lo, hi, codes) => {
      let r = this.keys.find(lo, hi);
      if (r === NONE) r = this.keys.insert(lo, hi);
      else this.keys.unlink(r);
      this.keys.linkTail(r);
      return this.applyCodes(r, codes, now, this.ttlMs);
    });
    if (admitted > 0) this.observer?.admitted?.(admitted);
    this.enforceCapacity();
    this.sets.collect();
    return admitted;
  }

  /** Entries of one pod (O(1)); -1 for an unknown pod. */
  podEntryCount(pod: string): number {
    const id = this.codec.podId(pod, false);
    return id < 0 ? -1 : this.podEntries[id]!;
  }

  private podTable(): readonly string[] {
    if (this.podTableCache === null || this.podTableVersion !== this.codec.version) {
      this.podTableCache = Object.freeze(this.codec.podNames.map((p) => p ?? ''));
      this.podTableVersion = this.codec.version;
    }
    return this.podTableCache;
  }

  // ---- entries -------------------------------------------------------------------------------

  /**
   * Adds entry codes (in order) to record r, moving it to the set it holds afterwards; returns
   * how many entries were admitted. A repeated decision extends a speculation's life; a real entry
   * confirms the speculations it stands for.
   */
  private applyCodes(r: number, codes: readonly number[], now: number, ttl: number): number {
    const from = this.keys.set[r]!;
    let s = from;
    let admitted = 0;
    for (const code of codes) {
      const t = this.sets.add(s, code);
      if (t.admitted === 1) {
        admitted++;
        this.entries++;
        this.podEntries[podOf(code)]!++;
        if (isSpeculativeCode(code)) {
          this.podSpeculative[podOf(code)]!++;
          this.speculativeActive++;
          this.timed.set(r, code, now, now + ttl);
        }
      } else if (t.extends) {
        this.timed.extend(r, code, now + ttl);
      }
      if (t.confirms !== null) {
        for (const c of t.confirms) {
          const inserted = this.timed.insertedAt(r, c) ?? now;
          this.entryGone(r, c);
          this.confirmed++;
          this.observer?.speculationConfirmed?.(this.codec.podNames[podOf(c)] ?? '', now - inserted);
        }
      }
      s = t.to;
    }
    if (s !== from) {
      if (from !== EMPTY_SET) this.sets.leave(r, from);
      this.sets.join(r, s);
      this.keys.set[r] = s;
    }
    return admitted;
  }

  /** Removes entry codes from record r (NONE: nothing); frees it once it holds nothing. */
  private removeCodes(r: number, codes: readonly number[]): number {
    if (r === NONE) return 0;
    const from = this.keys.set[r]!;
    let s = from;
    let removed = 0;
    for (const code of codes) {
      const to = this.sets.remove(s, code);
      if (to === s) continue;
      this.entryGone(r, code);
      removed++;
      s = to;
    }
    if (s !== from) {
      this.sets.leave(r, from);
      if (s === EMPTY_SET) {
        this.freeRecord(r);
      } else {
        this.sets.join(r, s);
        this.keys.set[r] = s;
      }
    }
    return removed;
  }

  /** Accounting for one entry leaving record r (the set change is the caller's). */
  private entryGone(r: number, code: number): void {
    this.entries--;
    const pod = podOf(code);
    this.podEntries[pod]!--;
    if (isSpeculativeCode(code)) {
      this.podSpeculative[pod]!--;
      this.speculativeActive--;
      this.timed.delete(r, code);
    }
  }

  /** Frees a record that has left its set. */
  private freeRecord(r: number): void {
    this.keys.unlink(r);
    this.keys.remove(r);
  }

  /** Engine → request keys by the ratio rule; request key i is words[2 * (first + i)], [.. + 1]. */
  private mapEngineKeys(engineKeys: BigUint64Array, requestWords: Uint32Array, first: number, requestCount: number): void {
    const e = engineKeys.length;
    const ew = this.engineWords.of(engineKeys);
    const eBase = this.engineWords.base;
    this.engineMap.prefetch(ew, eBase, e);
    if (e === requestCount) {
      for (let j = 0; j < e; j++) this.engineMap.set(ew[eBase + 2 * j]!, ew[eBase + 2 * j + 1]!, requestWords, first + j, first + j);
      return;
    }
    const n = Math.max(e, requestCount);
    // Engine key j maps to the contiguous request keys of the pairs i with floor(i*E/n) = j.
    let i = 0;
    for (let j = 0; j < e; j++) {
      const a = Math.floor((i * requestCount) / n);
      let b = a;
      while (i < n && Math.floor((i * e) / n) === j) {
        b = Math.floor((i * requestCount) / n);
        i++;
      }
      this.engineMap.set(ew[eBase + 2 * j]!, ew[eBase + 2 * j + 1]!, requestWords, first + a, first + b);
    }
  }

  // ---- expiry and capacity -------------------------------------------------------------------

  private sweepExpired(at?: number): void {
    if (this.timed.nextExpiry === Infinity) return;
    const now = at ?? this.now();
    if (this.timed.nextExpiry > now) return;
    const expiredByPod = new Map<number, number>();
    for (let batch = this.timed.popDue(now); batch !== undefined; batch = this.timed.popDue(now)) {
      const words = batch.words;
      let prev = NONE;
      for (let k = 0; k < words.length; k += 2) {
        const r = this.keys.follow(prev, words[k]!, words[k + 1]!);
        prev = r;
        if (r === NONE) continue;
        for (const code of batch.codes) {
          // A later decision may have extended it; only its latest expiry counts.
          if (this.keys.set[r]! < 0 || this.timed.expiresAt(r, code) > now) continue;
          this.removeCodes(r, [code]);
          this.expired++;
          expiredByPod.set(podOf(code), (expiredByPod.get(podOf(code)) ?? 0) + 1);
        }
        if (this.keys.set[r]! < 0) prev = NONE;
      }
    }
    for (const [pod, count] of expiredByPod) {
      this.observer?.speculationExpired?.(this.codec.podNames[pod] ?? '', count);
      this.observer?.evicted?.(count, 'expiry');
    }
    this.sets.collect();
  }

  private bytesInUse(): number {
    return (
      this.keys.inUse * KEY_BYTES +
      this.sets.live * SET_BYTES +
      this.sets.liveCodes * 4 +
      this.engineMap.size * EngineMap.BYTES_PER_MAPPING +
      this.timed.size * TIMED_ENTRY_BYTES
    );
  }

  private bytesAllocated(): number {
    return this.keys.bytesAllocated + this.sets.bytesAllocated + this.engineMap.bytesAllocated + this.timed.bytesAllocated + this.podEntries.byteLength * 2;
  }

  private enforceCapacity(): void {
    if (this.entries <= this.maxEntries && this.bytesInUse() <= this.maxBytes) return;
    const entryTarget = Math.floor(this.maxEntries * CAPACITY_LOW_WATER);
    const byteTarget = this.maxBytes * CAPACITY_LOW_WATER;
    let evicted = 0;
    for (;;) {
      // Engine mappings of keys no longer held (evicted earlier, cleared) count against maxBytes
      // but hold nothing: they go before any entry does. Otherwise the mappings evicted entries
      // leave behind would, in time, fill the byte budget alone and empty the index.
      const excessBytes = this.bytesInUse() - byteTarget;
      if (excessBytes > 0) {
        const mappings = Math.ceil(excessBytes / EngineMap.BYTES_PER_MAPPING);
        this.engineMap.dropStale(mappings, 16 * mappings + 1024);
      }
      if (this.entries <= entryTarget && this.bytesInUse() <= byteTarget) break;
      if (this.keys.lruHead === NONE) break;
      // Least recently used keys, a slice at a time, so the mappings they leave behind are
      // dropped (above) before more entries go.
      let slice = Math.max(64, this.keys.inUse >> 6);
      while (this.keys.lruHead !== NONE && slice-- > 0 && (this.entries > entryTarget || this.bytesInUse() > byteTarget)) {
        evicted += this.evictKey(this.keys.lruHead);
      }
    }
    this.capacityEvictions += evicted;
    if (evicted > 0) this.observer?.evicted?.(evicted, 'capacity');
  }

  /** Drops a whole key (capacity eviction); returns its entries. */
  private evictKey(r: number): number {
    const s = this.keys.set[r]!;
    const codes = this.sets.codes[s]!;
    for (let j = 0; j < codes.length; j++) this.entryGone(r, codes[j]!);
    this.sets.leave(r, s);
    this.freeRecord(r);
    return codes.length;
  }

  private checkOpen(): void {
    if (this.closed) throw new IndexError('CLOSED', 'index is closed');
  }
}

function positive(v: number, name: string): number {
  if (!(v > 0)) throw new IndexError('INVALID_CONFIG', `${name} must be a positive number, got ${String(v)}`);
  return v;
}

function validEntry(e: PodEntry): PodEntry {
  if (typeof e.pod !== 'string' || e.pod.length === 0) throw new IndexError('INVALID_ENTRY', 'entry.pod must be a non-empty string');
  if (typeof e.tier !== 'string' || e.tier.length === 0) throw new IndexError('INVALID_ENTRY', `entry.tier must be a non-empty string (pod ${e.pod})`);
  return e;
}
