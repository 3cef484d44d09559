import {
  EntryCodec,
  MAX_PODS,
  groupOf,
  hasGroupCode,
  isSpeculativeCode,
  podAndGroup,
  podOf,
  tierOf,
  withoutSpeculation,
} from '../entry-codes.js';
import {
  FLAG_HAS_GROUP,
  FLAG_SPECULATIVE,
  IndexError,
  type AddOptions,
  type IndexObserver,
  type IndexStats,
  type KeyKind,
  type KvBlockIndex,
  type LookupOptions,
  type LookupResult,
  type PodCounts,
  type PodEntry,
  type IndexSnapshot,
  type SnapshotCapable,
} from '../types.js';
import { EngineMap } from './engine-map.js';
import { hashWords } from './hashing.js';
import { allocColumns } from './result-slab.js';

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

const NONE = -1;
const FREE = -2;
const MAX_SLOT_LOAD = 0.7;
/** Typed-array bytes per node and per key record (see the layout below). */
const NODE_BYTES = 20;
const RECORD_BYTES = 24 + 4 / MAX_SLOT_LOAD;
/** Fraction of the limit kept after a capacity eviction, so evictions come in batches. */
const CAPACITY_LOW_WATER = 0.98;

export const DEFAULT_MAX_ENTRIES = 20_000_000;
export const DEFAULT_MAX_BYTES = 2 * 2 ** 30;
export const DEFAULT_SPECULATIVE_TTL_MS = 2000;

/**
 * The in-memory index: struct-of-arrays storage with no per-entry JS objects.
 *
 * - Key records (stable indices): the 64-bit request key, the head of its entry list, and links
 *   in one least-recently-used list; an open-addressing slot table maps keys to records.
 * - Nodes (stable indices): one per (request key, entry) pair — the record, the 32-bit entry code
 *   (pod, tier, speculative, group), the next node of the same key, and prev/next links in its
 *   pod's list, which makes clear(pod) proportional to that pod's entries.
 * - Speculative entries also sit in a min-heap of expiry times (decisions may carry their own TTL,
 *   so expiries do not arrive in order).
 *
 * About 20 bytes per node and 30 per key, plus the engine map (~23 bytes per mapping).
 */
export class InMemoryIndex implements KvBlockIndex, SnapshotCapable {
  readonly backend = 'memory';
  private readonly codec = new EntryCodec();
  private readonly maxEntries: number;
  private readonly maxBytes: number;
  private readonly ttlMs: number;
  private readonly now: () => number;
  private readonly observer: IndexObserver | undefined;
  private readonly engineMap: EngineMap;
  private sweepTimer: NodeJS.Timeout | undefined;
  private closed = false;

  // Key records.
  private recLo = new Uint32Array(1024);
  private recHi = new Uint32Array(1024);
  private recHead = new Int32Array(1024).fill(FREE);
  private recPrev = new Int32Array(1024);
  private recNext = new Int32Array(1024);
  /**
   * The record of the key that last followed this one in an add: prompts are chains, so a lookup
   * probes the slot table for block 0 and usually finds every later block through this hint, in
   * neighbouring memory, instead of a random probe per block.
   */
  private recChild = new Int32Array(1024).fill(NONE);
  private recFree = NONE;
  private recHighWater = 0;
  private recordsInUse = 0;
  private lruHead = NONE;
  private lruTail = NONE;
  private slots = new Int32Array(2048).fill(NONE);
  private slotMask = 2047;

  // Nodes.
  private nodeRec = new Int32Array(1024);
  private nodeCode = new Uint32Array(1024);
  private nodeNext = new Int32Array(1024);
  private nodePodPrev = new Int32Array(1024);
  private nodePodNext = new Int32Array(1024);
  private nodeFree = NONE;
  private nodeHighWater = 0;
  private nodesInUse = 0;

  // Per pod.
  private podHead = new Int32Array(MAX_PODS).fill(NONE);
  private podEntries = new Int32Array(MAX_PODS);
  private podSpeculative = new Int32Array(MAX_PODS);

  // Speculation: a min-heap of (key, code, expiry) by expiry; per-node expiry and insertion time.
  private specKeyLo = new Uint32Array(256);
  private specKeyHi = new Uint32Array(256);
  private specCode = new Uint32Array(256);
  private specExpiry = new Float64Array(256);
  private specLen = 0;
  private readonly specExpiresAt = new Map<number, number>();
  private readonly specInsertedAt = new Map<number, number>();
  private speculativeActive = 0;
  private confirmed = 0;
  private expired = 0;
  private capacityEvictions = 0;

  // Lookup scratch (lookups are synchronous inside, so one set serves every call).
  private runLen = new Int32Array(MAX_PODS);
  private candidate = new Uint8Array(MAX_PODS);
  private scratchPod = new Uint32Array(4096);
  private scratchTier = new Uint8Array(4096);
  private scratchFlags = new Uint8Array(4096);
  private scratchGroup = new Uint16Array(4096);
  private scratchOffsets = new Uint32Array(1024);
  /** Pod names by id, rebuilt only when pods come or go (lookups share it read-only). */
  private podTableCache: readonly string[] | null = null;
  private podTableVersion = -1;

  constructor(config: InMemoryIndexConfig = {}) {
    this.maxEntries = positive(config.maxEntries ?? DEFAULT_MAX_ENTRIES, 'maxEntries');
    this.maxBytes = positive(config.maxBytes ?? DEFAULT_MAX_BYTES, 'maxBytes');
    this.ttlMs = positive(config.speculativeTtlMs ?? DEFAULT_SPECULATIVE_TTL_MS, 'speculativeTtlMs');
    this.now = config.now ?? (() => performance.timeOrigin + performance.now());
    this.observer = config.observer;
    this.engineMap = new EngineMap(positive(config.maxEngineMappings ?? this.maxEntries, 'maxEngineMappings'), (lo, hi) => this.findRecord(lo, hi) >= 0);
    const sweepMs = config.sweepIntervalMs ?? 250;
    if (sweepMs > 0) {
      this.sweepTimer = setInterval(() => this.sweepExpired(), sweepMs);
      this.sweepTimer.unref();
    }
  }

  // ---- contract ------------------------------------------------------------------------------

  async add(engineKeys: BigUint64Array | null, requestKeys: BigUint64Array, entries: readonly PodEntry[], options: AddOptions = {}): Promise<void> {
    this.addSync(engineKeys, requestKeys, entries, options);
  }

  /** Synchronous add, for the event applier's hot path (the async contract wraps it). */
  addSync(engineKeys: BigUint64Array | null, requestKeys: BigUint64Array, entries: readonly PodEntry[], options: AddOptions = {}): void {
    this.checkOpen();
    if (requestKeys.length === 0 || entries.length === 0) return;
    const codes = entries.map((e) => this.codec.encode(validEntry(e), true));
    const now = this.now();
    this.sweepExpired(now);
    const ttl = options.ttlMs ?? this.ttlMs;
    const words = new Uint32Array(requestKeys.buffer, requestKeys.byteOffset, requestKeys.length * 2);
    let admitted = 0;
    let prev = NONE;
    for (let i = 0; i < requestKeys.length; i++) {
      const lo = words[2 * i]!;
      const hi = words[2 * i + 1]!;
      const r = this.recordFor(lo, hi, true);
      for (const code of codes) admitted += this.addCode(r, lo, hi, code, now, ttl);
      if (prev !== NONE) this.recChild[prev] = r;
      prev = r;
    }
    if (engineKeys !== null && engineKeys.length > 0) this.mapEngineKeys(engineKeys, words, requestKeys.length);
    if (admitted > 0) this.observer?.admitted?.(admitted);
    this.enforceCapacity();
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
      if (codes.length > 0) removed = this.removeCodes(lo, hi, codes);
    } else {
      // Entries of a pod this index no longer knows (cleared) remove nothing, but the mapping still
      // goes once nothing it maps to is held, as for any other removal.
      let stillHeld = false;
      const mapped = this.engineMap.forEach(lo, hi, (rLo, rHi) => {
        if (codes.length > 0) removed += this.removeCodes(rLo, rHi, codes);
        if (this.findRecord(rLo, rHi) >= 0) stillHeld = true;
      });
      if (mapped > 0 && !stillHeld) this.engineMap.delete(lo, hi);
    }
    if (removed > 0) this.observer?.evicted?.(removed, 'event');
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

  lookupSync(requestKeys: BigUint64Array, options: LookupOptions = {}): LookupResult {
    this.checkOpen();
    this.sweepExpired();
    const n = requestKeys.length;
    const words = new Uint32Array(requestKeys.buffer, requestKeys.byteOffset, n * 2);
    const earlyStop = options.earlyStop ?? true;
    const filtered = options.pods !== undefined;
    const marked: number[] = [];
    if (filtered) {
      for (const pod of options.pods!) {
        const id = this.codec.podId(pod, false);
        if (id >= 0 && this.candidate[id] === 0) {
          this.candidate[id] = 1;
          marked.push(id);
        }
      }
    }
    const offsets = this.scratchOffsets.length > n ? this.scratchOffsets : (this.scratchOffsets = new Uint32Array(2 * n + 2));
    const runLen = this.runLen;
    const started: number[] = [];
    let count = 0;
    let keyCount = n;
    let prev = NONE;
    for (let i = 0; i < n; i++) {
      offsets[i] = count;
      const lo = words[2 * i]!;
      const hi = words[2 * i + 1]!;
      const hint = prev === NONE ? NONE : this.recChild[prev]!;
      const r = hint >= 0 && this.recLo[hint] === lo && this.recHi[hint] === hi && this.recHead[hint] !== FREE ? hint : this.findRecord(lo, hi);
      if (prev !== NONE && r >= 0) this.recChild[prev] = r;
      prev = r;
      let advanced = 0;
      if (r >= 0) {
        this.touch(r);
        for (let node = this.recHead[r]!; node !== NONE; node = this.nodeNext[node]!) {
          const code = this.nodeCode[node]!;
          const pod = podOf(code);
          if (filtered && this.candidate[pod] === 0) continue;
          if (count === this.scratchPod.length) this.growScratch();
          this.scratchPod[count] = pod;
          this.scratchTier[count] = tierOf(code);
          this.scratchFlags[count] = (isSpeculativeCode(code) ? FLAG_SPECULATIVE : 0) | (hasGroupCode(code) ? FLAG_HAS_GROUP : 0);
          this.scratchGroup[count] = groupOf(code);
          count++;
          if (runLen[pod] === i) {
            if (i === 0) started.push(pod);
            runLen[pod] = i + 1;
            advanced++;
          }
        }
      }
      if (earlyStop && advanced === 0) {
        // No pod holds keys 0..i: nothing from here on can lengthen any prefix run.
        keyCount = i;
        count = offsets[i]!;
        break;
      }
    }
    offsets[keyCount] = count;
    for (const pod of started) runLen[pod] = 0;
    for (const id of marked) this.candidate[id] = 0;
    const columns = allocColumns(keyCount, count);
    columns.offsets.set(offsets.subarray(0, keyCount + 1));
    columns.podIndex.set(this.scratchPod.subarray(0, count));
    columns.tierIndex.set(this.scratchTier.subarray(0, count));
    columns.flags.set(this.scratchFlags.subarray(0, count));
    columns.group.set(this.scratchGroup.subarray(0, count));
    return { keyCount, ...columns, pods: this.podTable(), tiers: this.codec.tierNames };
  }

  private podTable(): readonly string[] {
    if (this.podTableCache === null || this.podTableVersion !== this.codec.version) {
      this.podTableCache = Object.freeze(this.codec.podNames.map((p) => p ?? ''));
      this.podTableVersion = this.codec.version;
    }
    return this.podTableCache;
  }

  async clear(pod: string): Promise<number> {
    return this.clearSync(pod);
  }

  clearSync(pod: string): number {
    this.checkOpen();
    // Expired speculation counts as expired, not as cleared.
    this.sweepExpired();
    const id = this.codec.podId(pod, false);
    if (id < 0) return 0;
    let removed = 0;
    while (this.podHead[id] !== NONE) {
      const node = this.podHead[id]!;
      this.removeNode(node);
      removed++;
    }
    this.codec.releasePod(id);
    if (removed > 0) this.observer?.evicted?.(removed, 'clear');
    return removed;
  }

  async stats(): Promise<IndexStats> {
    this.sweepExpired();
    return {
      backend: this.backend,
      entries: this.nodesInUse,
      keys: this.recordsInUse,
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
    for (let node = this.podHead[id]!; node !== NONE && items.length < limit; node = this.nodePodNext[node]!, i++) {
      if (i < offset) continue;
      const r = this.nodeRec[node]!;
      items.push({ key: (BigInt(this.recHi[r]!) << 32n) | BigInt(this.recLo[r]!), entry: this.codec.decode(this.nodeCode[node]!) });
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
    const count = this.nodesInUse - this.speculativeActive;
    const entryKeys = new Uint32Array(count * 2);
    const entryPod = new Uint16Array(count);
    const entryTier = new Uint8Array(count);
    const entryGroup = new Int16Array(count);
    let n = 0;
    for (let r = this.lruHead; r !== NONE; r = this.recNext[r]!) {
      for (let node = this.recHead[r]!; node !== NONE; node = this.nodeNext[node]!) {
        const code = this.nodeCode[node]!;
        if (isSpeculativeCode(code)) continue;
        entryKeys[2 * n] = this.recLo[r]!;
        entryKeys[2 * n + 1] = this.recHi[r]!;
        entryPod[n] = podOf(code);
        entryTier[n] = tierOf(code);
        entryGroup[n] = hasGroupCode(code) ? groupOf(code) : -1;
        n++;
      }
    }
    const engine = this.engineMap.export();
    return {
      pods: this.codec.podNames.map((p) => p ?? ''),
      tiers: [...this.codec.tierNames],
      entryKeys,
      entryPod,
      entryTier,
      entryGroup,
      ...engine,
    };
  }

  importSnapshot(snapshot: IndexSnapshot): number {
    this.checkOpen();
    const count = snapshot.entryPod.length;
    if (snapshot.entryKeys.length !== 2 * count || snapshot.entryTier.length !== count || snapshot.entryGroup.length !== count) {
      throw new IndexError('INVALID_ENTRY', 'snapshot columns disagree in length');
    }
    // Ids are re-registered here: a peer's pod and tier numbering means nothing in this process.
    const podIds = snapshot.pods.map((p) => (p === '' ? -1 : this.codec.podId(p, true)));
    const tierIds = snapshot.tiers.map((t) => this.codec.tierId(t, true));
    const now = this.now();
    let admitted = 0;
    let prevKeyLo = -1;
    let prevKeyHi = -1;
    let r = NONE;
    for (let i = 0; i < count; i++) {
      const pod = podIds[snapshot.entryPod[i]!];
      const tier = tierIds[snapshot.entryTier[i]!];
      if (pod === undefined || pod < 0 || tier === undefined) throw new IndexError('INVALID_ENTRY', `snapshot entry ${i} names an unknown pod or tier`);
      const lo = snapshot.entryKeys[2 * i]!;
      const hi = snapshot.entryKeys[2 * i + 1]!;
      // Entries of one key are adjacent, so the record is looked up once per key.
      if (lo !== prevKeyLo || hi !== prevKeyHi) {
        r = this.recordFor(lo, hi, true);
        prevKeyLo = lo;
        prevKeyHi = hi;
      }
      const group = snapshot.entryGroup[i]!;
      let code = pod | (tier << 16);
      if (group >= 0) code = this.codec.encode({ pod: snapshot.pods[snapshot.entryPod[i]!]!, tier: snapshot.tiers[snapshot.entryTier[i]!]!, speculative: false, group }, true);
      admitted += this.addCode(r, lo, hi, code >>> 0, now, this.ttlMs);
    }
    this.engineMap.import(snapshot.engineKeys, snapshot.engineCounts, snapshot.engineTargets);
    if (admitted > 0) this.observer?.admitted?.(admitted);
    this.enforceCapacity();
    return admitted;
  }

  /** Entries of one pod (O(1)); -1 for an unknown pod. */
  podEntryCount(pod: string): number {
    const id = this.codec.podId(pod, false);
    return id < 0 ? -1 : this.podEntries[id]!;
  }

  // ---- records -------------------------------------------------------------------------------

  private findRecord(lo: number, hi: number): number {
    const mask = this.slotMask;
    let i = hashWords(lo, hi) & mask;
    for (;;) {
      const r = this.slots[i]!;
      if (r === NONE) return NONE;
      if (this.recLo[r] === lo && this.recHi[r] === hi) return r;
      i = (i + 1) & mask;
    }
  }

  private recordFor(lo: number, hi: number, touch: boolean): number {
    const existing = this.findRecord(lo, hi);
    if (existing >= 0) {
      if (touch) this.touch(existing);
      return existing;
    }
    if ((this.recordsInUse + 1) / (this.slotMask + 1) > MAX_SLOT_LOAD) this.growSlots();
    let r: number;
    if (this.recFree !== NONE) {
      r = this.recFree;
      this.recFree = this.recNext[r]!;
    } else {
      if (this.recHighWater === this.recLo.length) this.growRecords();
      r = this.recHighWater++;
    }
    this.recLo[r] = lo;
    this.recHi[r] = hi;
    this.recHead[r] = NONE;
    this.recordsInUse++;
    let i = hashWords(lo, hi) & this.slotMask;
    while (this.slots[i] !== NONE) i = (i + 1) & this.slotMask;
    this.slots[i] = r;
    this.linkTail(r);
    return r;
  }

  private freeRecord(r: number): void {
    const lo = this.recLo[r]!;
    const hi = this.recHi[r]!;
    const mask = this.slotMask;
    let i = hashWords(lo, hi) & mask;
    while (this.slots[i] !== r) i = (i + 1) & mask;
    let hole = i;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const other = this.slots[j]!;
      if (other === NONE) break;
      const home = hashWords(this.recLo[other]!, this.recHi[other]!) & mask;
      const movable = hole <= j ? home <= hole || home > j : home <= hole && home > j;
      if (movable) {
        this.slots[hole] = other;
        hole = j;
      }
    }
    this.slots[hole] = NONE;
    this.unlinkLru(r);
    this.recHead[r] = FREE;
    this.recNext[r] = this.recFree;
    this.recFree = r;
    this.recordsInUse--;
  }

  private linkTail(r: number): void {
    this.recPrev[r] = this.lruTail;
    this.recNext[r] = NONE;
    if (this.lruTail !== NONE) this.recNext[this.lruTail] = r;
    else this.lruHead = r;
    this.lruTail = r;
  }

  private unlinkLru(r: number): void {
    const prev = this.recPrev[r]!;
    const next = this.recNext[r]!;
    if (prev !== NONE) this.recNext[prev] = next;
    else this.lruHead = next;
    if (next !== NONE) this.recPrev[next] = prev;
    else this.lruTail = prev;
  }

  private touch(r: number): void {
    if (r === this.lruTail) return;
    this.unlinkLru(r);
    this.linkTail(r);
  }

  // ---- nodes ---------------------------------------------------------------------------------

  /** Adds one code under record r (idempotent); returns 1 if an entry was admitted. */
  private addCode(r: number, lo: number, hi: number, code: number, now: number, ttl: number): number {
    const speculative = isSpeculativeCode(code);
    const owner = podAndGroup(code);
    const pod = podOf(code);
    let specNode = NONE;
    for (let node = this.recHead[r]!; node !== NONE; node = this.nodeNext[node]!) {
      const c = this.nodeCode[node]!;
      if (c === code) {
        // Already held; a repeated routing decision extends the speculation's life, and a shorter
        // TTL does not cut short the earlier decision's.
        if (speculative && now + ttl > (this.specExpiresAt.get(node) ?? 0)) this.extendSpeculation(node, lo, hi, code, now + ttl);
        return 0;
      }
      // Speculative and real entries of a pod stand side by side unless they are the same tier: a
      // decision to a pod holding the key only in CPU is an expected GPU copy (and scores as one),
      // and only that copy's event confirms it.
      if (podOf(c) !== pod || isSpeculativeCode(c) === speculative || tierOf(c) !== tierOf(code)) continue;
      // A routing decision knows no KV-cache group, while engines report one (vLLM: group 0): a
      // group-less speculation stands for the pod in any group.
      if (speculative) {
        if (!hasGroupCode(code) || podAndGroup(c) === owner) return 0; // the pod really holds it already
      } else if (specNode === NONE && (!hasGroupCode(c) || podAndGroup(c) === owner)) {
        specNode = node;
      }
    }
    const node = this.allocNode();
    this.nodeRec[node] = r;
    this.nodeCode[node] = code;
    this.nodeNext[node] = this.recHead[r]!;
    this.recHead[r] = node;
    const head = this.podHead[pod]!;
    this.nodePodPrev[node] = NONE;
    this.nodePodNext[node] = head;
    if (head !== NONE) this.nodePodPrev[head] = node;
    this.podHead[pod] = node;
    this.podEntries[pod]!++;
    this.nodesInUse++;
    if (speculative) {
      this.podSpeculative[pod]!++;
      this.speculativeActive++;
      this.specInsertedAt.set(node, now);
      this.extendSpeculation(node, lo, hi, code, now + ttl);
    }
    if (specNode !== NONE) {
      // Removed only after the real entry is linked, so the key's record never empties here. Every
      // speculation the entry stands for goes: a group-less decision and one naming this group may
      // both be waiting for it.
      const tier = tierOf(code);
      for (let n = this.recHead[r]!; n !== NONE; ) {
        const next = this.nodeNext[n]!;
        const c = this.nodeCode[n]!;
        if (isSpeculativeCode(c) && podOf(c) === pod && tierOf(c) === tier && (!hasGroupCode(c) || podAndGroup(c) === owner)) {
          const inserted = this.specInsertedAt.get(n) ?? now;
          this.removeNode(n);
          this.confirmed++;
          this.observer?.speculationConfirmed?.(this.codec.podNames[pod] ?? '', now - inserted);
        }
        n = next;
      }
    }
    return 1;
  }

  private extendSpeculation(node: number, lo: number, hi: number, code: number, expiresAt: number): void {
    this.specExpiresAt.set(node, expiresAt);
    if (this.specLen === this.specCode.length) this.growSpecQueue();
    // Sift the new expiry up from the heap's end.
    let at = this.specLen++;
    while (at > 0) {
      const parent = (at - 1) >> 1;
      if (this.specExpiry[parent]! <= expiresAt) break;
      this.moveSpec(parent, at);
      at = parent;
    }
    this.specKeyLo[at] = lo;
    this.specKeyHi[at] = hi;
    this.specCode[at] = code;
    this.specExpiry[at] = expiresAt;
  }

  private moveSpec(from: number, to: number): void {
    this.specKeyLo[to] = this.specKeyLo[from]!;
    this.specKeyHi[to] = this.specKeyHi[from]!;
    this.specCode[to] = this.specCode[from]!;
    this.specExpiry[to] = this.specExpiry[from]!;
  }

  /** Removes the heap's earliest expiry (slot 0), keeping the heap order. */
  private popSpec(): void {
    const last = --this.specLen;
    if (last === 0) return;
    const expiry = this.specExpiry[last]!;
    let at = 0;
    for (;;) {
      let child = 2 * at + 1;
      if (child >= last) break;
      if (child + 1 < last && this.specExpiry[child + 1]! < this.specExpiry[child]!) child++;
      if (this.specExpiry[child]! >= expiry) break;
      this.moveSpec(child, at);
      at = child;
    }
    this.moveSpec(last, at);
  }

  private allocNode(): number {
    let node: number;
    if (this.nodeFree !== NONE) {
      node = this.nodeFree;
      this.nodeFree = this.nodeNext[node]!;
    } else {
      if (this.nodeHighWater === this.nodeRec.length) this.growNodes();
      node = this.nodeHighWater++;
    }
    return node;
  }

  /** Unlinks a node from its key and pod lists and frees it (and its key record when emptied). */
  private removeNode(node: number): void {
    const r = this.nodeRec[node]!;
    const code = this.nodeCode[node]!;
    let prev = NONE;
    for (let n = this.recHead[r]!; n !== node; n = this.nodeNext[n]!) prev = n;
    if (prev === NONE) this.recHead[r] = this.nodeNext[node]!;
    else this.nodeNext[prev] = this.nodeNext[node]!;
    const pod = podOf(code);
    const pp = this.nodePodPrev[node]!;
    const pn = this.nodePodNext[node]!;
    if (pp !== NONE) this.nodePodNext[pp] = pn;
    else this.podHead[pod] = pn;
    if (pn !== NONE) this.nodePodPrev[pn] = pp;
    this.podEntries[pod]!--;
    if (isSpeculativeCode(code)) {
      this.podSpeculative[pod]!--;
      this.speculativeActive--;
      this.specExpiresAt.delete(node);
      this.specInsertedAt.delete(node);
    }
    this.nodeRec[node] = NONE;
    this.nodeNext[node] = this.nodeFree;
    this.nodeFree = node;
    this.nodesInUse--;
    if (this.recHead[r] === NONE) this.freeRecord(r);
  }

  private removeCodes(lo: number, hi: number, codes: readonly number[]): number {
    const r = this.findRecord(lo, hi);
    if (r < 0) return 0;
    let removed = 0;
    for (const code of codes) {
      // Re-read the head each time: a removal may free the record.
      if (this.recHead[r] === FREE) break;
      for (let node = this.recHead[r]!; node !== NONE; node = this.nodeNext[node]!) {
        if (this.nodeCode[node] === code) {
          this.removeNode(node);
          removed++;
          break;
        }
      }
    }
    return removed;
  }

  private mapEngineKeys(engineKeys: BigUint64Array, requestWords: Uint32Array, requestCount: number): void {
    const e = engineKeys.length;
    const ew = new Uint32Array(engineKeys.buffer, engineKeys.byteOffset, e * 2);
    const n = Math.max(e, requestCount);
    // Engine key j maps to the contiguous request keys of the pairs i with floor(i*E/n) = j.
    let i = 0;
    for (let j = 0; j < e; j++) {
      const first = Math.floor((i * requestCount) / n);
      let last = first;
      while (i < n && Math.floor((i * e) / n) === j) {
        last = Math.floor((i * requestCount) / n);
        i++;
      }
      this.engineMap.set(ew[2 * j]!, ew[2 * j + 1]!, requestWords, first, last);
    }
  }

  // ---- expiry and capacity -------------------------------------------------------------------

  private sweepExpired(at?: number): void {
    if (this.specLen === 0) return;
    const now = at ?? this.now();
    if (this.specExpiry[0]! > now) return;
    const expiredByPod = new Map<number, number>();
    while (this.specLen > 0 && this.specExpiry[0]! <= now) {
      const keyLo = this.specKeyLo[0]!;
      const keyHi = this.specKeyHi[0]!;
      const code = this.specCode[0]!;
      this.popSpec();
      const r = this.findRecord(keyLo, keyHi);
      if (r < 0) continue;
      for (let node = this.recHead[r]!; node !== NONE; node = this.nodeNext[node]!) {
        if (this.nodeCode[node] !== code) continue;
        // A later decision may have extended it; only its latest expiry counts.
        if ((this.specExpiresAt.get(node) ?? 0) <= now) {
          this.removeNode(node);
          this.expired++;
          expiredByPod.set(podOf(code), (expiredByPod.get(podOf(code)) ?? 0) + 1);
        }
        break;
      }
    }
    for (const [pod, count] of expiredByPod) {
      this.observer?.speculationExpired?.(this.codec.podNames[pod] ?? '', count);
      this.observer?.evicted?.(count, 'expiry');
    }
  }

  private bytesInUse(): number {
    return this.nodesInUse * NODE_BYTES + this.recordsInUse * RECORD_BYTES + this.engineMap.size * EngineMap.BYTES_PER_MAPPING;
  }

  private bytesAllocated(): number {
    return (
      this.recLo.byteLength * 6 +
      this.slots.byteLength +
      this.nodeRec.byteLength * 5 +
      this.podHead.byteLength * 3 +
      this.engineMap.bytesAllocated +
      this.specCode.length * 20
    );
  }

  private enforceCapacity(): void {
    if (this.nodesInUse <= this.maxEntries && this.bytesInUse() <= this.maxBytes) return;
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
      if (this.nodesInUse <= entryTarget && this.bytesInUse() <= byteTarget) break;
      if (this.lruHead === NONE) break;
      // Least recently used keys, a slice at a time, so the mappings they leave behind are
      // dropped (above) before more entries go.
      let slice = Math.max(64, this.recordsInUse >> 6);
      while (this.lruHead !== NONE && slice-- > 0 && (this.nodesInUse > entryTarget || this.bytesInUse() > byteTarget)) {
        const r = this.lruHead;
        while (this.recHead[r] !== FREE && this.recHead[r] !== NONE) {
          this.removeNode(this.recHead[r]!);
          evicted++;
        }
      }
    }
    this.capacityEvictions += evicted;
    if (evicted > 0) this.observer?.evicted?.(evicted, 'capacity');
  }

  // ---- growth --------------------------------------------------------------------------------

  /**
   * Record and node arrays grow by half (not double) and never past what the configured capacity
   * can use: at 10 M entries, doubling left ~30% of their memory unused.
   */
  private nextCapacity(current: number): number {
    return Math.max(current + 1, Math.min(Math.floor(current * 1.5), this.maxEntries + 1024));
  }

  private growRecords(): void {
    const cap = this.nextCapacity(this.recLo.length);
    this.recLo = grown(this.recLo, cap);
    this.recHi = grown(this.recHi, cap);
    this.recHead = grown(this.recHead, cap, FREE);
    this.recPrev = grown(this.recPrev, cap);
    this.recNext = grown(this.recNext, cap);
    this.recChild = grown(this.recChild, cap, NONE);
  }

  private growSlots(): void {
    const cap = (this.slotMask + 1) * 2;
    const old = this.slots;
    this.slots = new Int32Array(cap).fill(NONE);
    this.slotMask = cap - 1;
    for (let s = 0; s < old.length; s++) {
      const r = old[s]!;
      if (r === NONE) continue;
      let i = hashWords(this.recLo[r]!, this.recHi[r]!) & this.slotMask;
      while (this.slots[i] !== NONE) i = (i + 1) & this.slotMask;
      this.slots[i] = r;
    }
  }

  private growNodes(): void {
    const cap = this.nextCapacity(this.nodeRec.length);
    this.nodeRec = grown(this.nodeRec, cap);
    this.nodeCode = grown(this.nodeCode, cap);
    this.nodeNext = grown(this.nodeNext, cap);
    this.nodePodPrev = grown(this.nodePodPrev, cap);
    this.nodePodNext = grown(this.nodePodNext, cap);
  }

  private growSpecQueue(): void {
    const cap = this.specCode.length * 2;
    this.specKeyLo = grown(this.specKeyLo, cap);
    this.specKeyHi = grown(this.specKeyHi, cap);
    this.specCode = grown(this.specCode, cap);
    this.specExpiry = grown(this.specExpiry, cap);
  }

  private growScratch(): void {
    const cap = this.scratchPod.length * 2;
    this.scratchPod = grown(this.scratchPod, cap);
    this.scratchTier = grown(this.scratchTier, cap);
    this.scratchFlags = grown(this.scratchFlags, cap);
    this.scratchGroup = grown(this.scratchGroup, cap);
  }

  private checkOpen(): void {
    if (this.closed) throw new IndexError('CLOSED', 'index is closed');
  }
}

function grown<T extends Int32Array | Uint32Array | Uint8Array | Uint16Array | Float64Array>(old: T, capacity: number, fill?: number): T {
  const next = new (old.constructor as new (n: number) => T)(capacity);
  next.set(old);
  if (fill !== undefined) next.fill(fill, old.length);
  return next;
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

/** Exposed for tests and benchmarks that check the entry layout. */
export const _layout = { NODE_BYTES, RECORD_BYTES, withoutSpeculation };
