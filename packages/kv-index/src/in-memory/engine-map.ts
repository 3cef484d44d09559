import { hashWords } from './hashing.js';

const EMPTY = 0;
const SINGLE = 1;
const LIST = 2;
const KIND_MASK = 0x03;
const REFERENCED = 0x80;
const MAX_LOAD = 0.75;
/** Entries rehashed per batch when the table grows (their new homes are read ahead as a batch). */
const REHASH_BATCH = 256;

/**
 * Engine key → request key(s), as an open-addressing table of full 64-bit keys.
 *
 * The map records content-addressed facts (an engine key names the same tokens wherever it
 * appears), so a mapping that outlives the entries it pointed at is never wrong, only memory. It
 * is bounded: past `maxMappings`, a CLOCK sweep evicts mappings whose request keys the index no
 * longer holds (`held` says which), then mappings not used since the last sweep.
 * Most engine keys map to one request key; 1:many mappings (engine blocks larger than request
 * blocks, e.g. LMCache chunks) keep their list aside.
 */
export class EngineMap {
  /**
   * Per slot, four words: the engine key (low, high) and its request key (low, high; for a list,
   * its id and 0). One array, so a probe reads one cache line per slot, not four.
   */
  private t: Uint32Array;
  private ctl: Uint8Array;
  private mask: number;
  private lists = new Map<number, BigUint64Array>();
  private nextListId = 0;
  private hand = 0;
  /** Sink of the prefetching reads (kept so they are not optimised away). */
  private prefetched = 0;
  size = 0;

  constructor(
    private maxMappings: number,
    /** Whether the index still holds a request key (a mapping none of whose keys is held is stale). */
    private readonly held: (lo: number, hi: number) => boolean = () => true,
    initialCapacity = 1024,
  ) {
    const cap = 1 << Math.ceil(Math.log2(Math.max(16, initialCapacity)));
    this.t = new Uint32Array(4 * cap);
    this.ctl = new Uint8Array(cap);
    this.mask = cap - 1;
  }

  get bytesAllocated(): number {
    let listBytes = 0;
    for (const l of this.lists.values()) listBytes += l.byteLength + 48;
    return this.t.byteLength + this.ctl.byteLength + listBytes;
  }

  /** Bytes per mapping at the table's maximum load, for capacity accounting. */
  static readonly BYTES_PER_MAPPING = 17 / MAX_LOAD;

  private find(lo: number, hi: number): number {
    const mask = this.mask;
    let i = hashWords(lo, hi) & mask;
    for (;;) {
      const c = this.ctl[i]!;
      if (c === EMPTY) return -1;
      if (this.t[4 * i] === lo && this.t[4 * i + 1] === hi) return i;
      i = (i + 1) & mask;
    }
  }

  has(lo: number, hi: number): boolean {
    return this.find(lo, hi) >= 0;
  }

  /** Calls visit(lo, hi) for each request key of the engine key, in order; returns how many. */
  forEach(lo: number, hi: number, visit: (rLo: number, rHi: number) => void): number {
    const i = this.find(lo, hi);
    if (i < 0) return 0;
    this.ctl[i] = this.ctl[i]! | REFERENCED;
    if ((this.ctl[i]! & KIND_MASK) === SINGLE) {
      visit(this.t[4 * i + 2]!, this.t[4 * i + 3]!);
      return 1;
    }
    const list = this.lists.get(this.t[4 * i + 2]!)!;
    const words = new Uint32Array(list.buffer, list.byteOffset, list.length * 2);
    for (let k = 0; k < list.length; k++) visit(words[2 * k]!, words[2 * k + 1]!);
    return list.length;
  }

  /** The last request key of the engine key, or undefined. */
  last(lo: number, hi: number): bigint | undefined {
    const i = this.find(lo, hi);
    if (i < 0) return undefined;
    this.ctl[i] = this.ctl[i]! | REFERENCED;
    if ((this.ctl[i]! & KIND_MASK) === SINGLE) return (BigInt(this.t[4 * i + 3]!) << 32n) | BigInt(this.t[4 * i + 2]!);
    const list = this.lists.get(this.t[4 * i + 2]!)!;
    return list[list.length - 1];
  }

  /** Maps the engine key to request keys words[2a .. 2b+1] (inclusive range a..b). */
  set(lo: number, hi: number, words: Uint32Array, a: number, b: number): void {
    if ((this.size + 1) / (this.mask + 1) > MAX_LOAD) this.grow();
    // One pass: the key's slot, or the empty slot that ends its probe sequence.
    const mask = this.mask;
    let i = hashWords(lo, hi) & mask;
    while (this.ctl[i] !== EMPTY && (this.t[4 * i] !== lo || this.t[4 * i + 1] !== hi)) i = (i + 1) & mask;
    if (this.ctl[i] === EMPTY) {
      this.t[4 * i] = lo;
      this.t[4 * i + 1] = hi;
      this.size++;
    } else if ((this.ctl[i]! & KIND_MASK) === LIST) {
      this.lists.delete(this.t[4 * i + 2]!);
    }
    if (a === b) {
      this.t[4 * i + 2] = words[2 * a]!;
      this.t[4 * i + 3] = words[2 * a + 1]!;
      this.ctl[i] = SINGLE | REFERENCED;
    } else {
      const list = new BigUint64Array(b - a + 1);
      new Uint32Array(list.buffer).set(words.subarray(2 * a, 2 * b + 2));
      const id = this.nextListId++ >>> 0;
      this.lists.set(id, list);
      this.t[4 * i + 2] = id;
      this.t[4 * i + 3] = 0;
      this.ctl[i] = LIST | REFERENCED;
    }
    if (this.size > this.maxMappings) this.evictUnreferenced(this.size - this.maxMappings);
  }

  /** Every mapping, as word columns (for snapshots). */
  export(): { engineKeys: Uint32Array; engineCounts: Uint32Array; engineTargets: Uint32Array } {
    const engineKeys = new Uint32Array(this.size * 2);
    const engineCounts = new Uint32Array(this.size);
    let targets = 0;
    for (let i = 0; i <= this.mask; i++) {
      const kind = this.ctl[i]! & KIND_MASK;
      if (kind === SINGLE) targets++;
      else if (kind === LIST) targets += this.lists.get(this.t[4 * i + 2]!)!.length;
    }
    const engineTargets = new Uint32Array(targets * 2);
    let k = 0;
    let t = 0;
    for (let i = 0; i <= this.mask; i++) {
      const kind = this.ctl[i]! & KIND_MASK;
      if (kind === EMPTY) continue;
      engineKeys[2 * k] = this.t[4 * i]!;
      engineKeys[2 * k + 1] = this.t[4 * i + 1]!;
      if (kind === SINGLE) {
        engineCounts[k] = 1;
        engineTargets[2 * t] = this.t[4 * i + 2]!;
        engineTargets[2 * t + 1] = this.t[4 * i + 3]!;
        t++;
      } else {
        const list = this.lists.get(this.t[4 * i + 2]!)!;
        engineCounts[k] = list.length;
        engineTargets.set(new Uint32Array(list.buffer, list.byteOffset, list.length * 2), 2 * t);
        t += list.length;
      }
      k++;
    }
    return { engineKeys, engineCounts, engineTargets };
  }

  /** Adds the mappings of `export()`'s columns. */
  import(engineKeys: Uint32Array, engineCounts: Uint32Array, engineTargets: Uint32Array): void {
    let t = 0;
    for (let k = 0; k < engineCounts.length; k++) {
      const n = engineCounts[k]!;
      if (n > 0) this.set(engineKeys[2 * k]!, engineKeys[2 * k + 1]!, engineTargets, t, t + n - 1);
      t += n;
    }
  }

  delete(lo: number, hi: number): boolean {
    const i = this.find(lo, hi);
    if (i < 0) return false;
    this.removeAt(i);
    return true;
  }

  clear(): void {
    this.ctl.fill(EMPTY);
    this.lists.clear();
    this.size = 0;
  }

  private removeAt(slot: number): void {
    if ((this.ctl[slot]! & KIND_MASK) === LIST) this.lists.delete(this.t[4 * slot + 2]!);
    this.size--;
    // Backward-shift deletion keeps probe chains intact without tombstones.
    const mask = this.mask;
    let hole = slot;
    let j = slot;
    for (;;) {
      j = (j + 1) & mask;
      if (this.ctl[j] === EMPTY) break;
      const home = hashWords(this.t[4 * j]!, this.t[4 * j + 1]!) & mask;
      const movable = hole <= j ? home <= hole || home > j : home <= hole && home > j;
      if (movable) {
        this.t[4 * hole] = this.t[4 * j]!;
        this.t[4 * hole + 1] = this.t[4 * j + 1]!;
        this.t[4 * hole + 2] = this.t[4 * j + 2]!;
        this.t[4 * hole + 3] = this.t[4 * j + 3]!;
        this.ctl[hole] = this.ctl[j]!;
        hole = j;
      }
    }
    this.ctl[hole] = EMPTY;
  }

  /** Whether none of the slot's request keys is held any more. */
  private isStale(slot: number): boolean {
    if ((this.ctl[slot]! & KIND_MASK) === SINGLE) return !this.held(this.t[4 * slot + 2]!, this.t[4 * slot + 3]!);
    const list = this.lists.get(this.t[4 * slot + 2]!)!;
    const words = new Uint32Array(list.buffer, list.byteOffset, list.length * 2);
    for (let k = 0; k < list.length; k++) if (this.held(words[2 * k]!, words[2 * k + 1]!)) return false;
    return true;
  }

  /**
   * Drops up to `count` stale mappings (none of their request keys held: their entries went by
   * capacity eviction or clear), sweeping on from where the last sweep stopped and looking at no
   * more than `maxSteps` slots; returns how many went. What the index evicts for space leaves such
   * mappings behind, and they must not crowd out the entries themselves.
   */
  dropStale(count: number, maxSteps: number): number {
    let removed = 0;
    let steps = 0;
    const limit = Math.min(maxSteps, this.mask + 1);
    while (removed < count && steps < limit && this.size > 0) {
      const i = this.hand;
      steps++;
      if (this.ctl[i] !== EMPTY && this.isStale(i)) {
        // The slot may be refilled by backward shift; look at it again.
        this.removeAt(i);
        removed++;
      } else {
        this.hand = (i + 1) & this.mask;
      }
    }
    return removed;
  }

  private evictUnreferenced(count: number): void {
    let removed = 0;
    let steps = 0;
    const cap = this.mask + 1;
    while (removed < count && steps < 4 * cap) {
      const i = this.hand;
      const c = this.ctl[i]!;
      steps++;
      if (c === EMPTY) {
        this.hand = (i + 1) & this.mask;
      } else if (this.isStale(i)) {
        this.removeAt(i);
        removed++;
      } else if (c & REFERENCED) {
        this.ctl[i] = c & ~REFERENCED;
        this.hand = (i + 1) & this.mask;
      } else {
        // The slot may be refilled by backward shift; look at it again.
        this.removeAt(i);
        removed++;
      }
    }
  }

  private grow(): void {
    const oldT = this.t;
    const oldCtl = this.ctl;
    const cap = (this.mask + 1) * 2;
    const t = (this.t = new Uint32Array(4 * cap));
    const ctl = (this.ctl = new Uint8Array(cap));
    const mask = (this.mask = cap - 1);
    this.hand = 0;
    const homes = new Int32Array(REHASH_BATCH);
    for (let base = 0; base < oldCtl.length; base += REHASH_BATCH) {
      const end = Math.min(oldCtl.length, base + REHASH_BATCH);
      // Homes first, each read once: independent reads whose cache misses overlap.
      let sink = 0;
      for (let s = base; s < end; s++) {
        const home = oldCtl[s] === EMPTY ? -1 : hashWords(oldT[4 * s]!, oldT[4 * s + 1]!) & mask;
        homes[s - base] = home;
        if (home >= 0) sink ^= ctl[home]!;
      }
      this.prefetched ^= sink;
      for (let s = base; s < end; s++) {
        let i = homes[s - base]!;
        if (i < 0) continue;
        while (ctl[i] !== EMPTY) i = (i + 1) & mask;
        t[4 * i] = oldT[4 * s]!;
        t[4 * i + 1] = oldT[4 * s + 1]!;
        t[4 * i + 2] = oldT[4 * s + 2]!;
        t[4 * i + 3] = oldT[4 * s + 3]!;
        ctl[i] = oldCtl[s]!;
      }
    }
  }

  /**
   * Reads the home slot of each engine key of a call before any is set: the reads are independent,
   * so their cache misses overlap (see KeyTable.prefetch).
   */
  prefetch(words: Uint32Array, base: number, count: number): void {
    const mask = this.mask;
    let sink = 0;
    for (let k = base; k < base + 2 * count; k += 2) {
      const i = hashWords(words[k]!, words[k + 1]!) & mask;
      sink ^= this.ctl[i]! ^ this.t[4 * i]!;
    }
    this.prefetched ^= sink;
  }
}
