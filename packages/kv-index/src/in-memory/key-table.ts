import { hashWords } from './hashing.js';

export const NONE = -1;
/** `set` of a free record (live records hold an entry-set id ≥ 0). */
export const FREE = -2;
const MAX_SLOT_LOAD = 0.7;
/** Keys rehashed per batch when the slot table grows (their new homes are read ahead as a batch). */
const REHASH_BATCH = 256;

/** Typed-array bytes per request key: 7 × 4 here, 2 × 4 of set membership, and a slot (2 × 4) at 70% load. */
export const KEY_BYTES = 36 + 8 / MAX_SLOT_LOAD;

/**
 * One record per request key held, in struct-of-arrays form with stable indices: the 64-bit key,
 * the entry set it holds (an interned set of entry codes, see EntrySets), a successor hint, and its
 * links in the one least-recently-used list. An open-addressing slot table maps keys to records.
 *
 * The successor hint is the record that last followed this key in an add. Prompts are chains, so a
 * walk over a prompt's keys hashes key 0 and then, key after key, compares the next query key with
 * the hinted record's key: consecutive keys of a run are compared, not hashed.
 */
export class KeyTable {
  /**
   * The 64-bit key of record r as words 2r (low) and 2r+1 (high): one array, so comparing a key
   * reads one cache line, and a walk over a chain's records streams through one array.
   */
  kw = new Uint32Array(2048);
  /** Entry-set id of each record; FREE for free records. */
  set = new Int32Array(1024).fill(FREE);
  child = new Int32Array(1024).fill(NONE);
  lruPrev = new Int32Array(1024);
  /** LRU successor; for free records, the next free record. */
  lruNext = new Int32Array(1024);
  lruHead = NONE;
  lruTail = NONE;
  inUse = 0;
  /** Per slot: the record (NONE when empty) and its key's hash. */
  private slots = new Int32Array(4096).fill(NONE);
  private slotMask = 2047;
  private freeHead = NONE;
  /** Sink of the prefetching reads (kept so they are not optimised away). */
  private prefetched = 0;
  private highWater = 0;

  constructor(
    /** The most records the owner will ever need (arrays never grow past it). */
    private readonly maxRecords: number,
    /** Called after the record arrays grew, so per-record arrays kept elsewhere follow. */
    private readonly onGrow: (capacity: number) => void,
  ) {}

  get capacity(): number {
    return this.set.length;
  }

  get bytesAllocated(): number {
    return this.set.byteLength * 7 + this.slots.byteLength;
  }

  find(lo: number, hi: number): number {
    const r = this.probe(lo, hi);
    return r >= 0 ? r : NONE;
  }

  /**
   * The key's record (≥ 0), or where it would go: -2 - slot. The slot stays right for `insertAt`
   * until the table changes; `reserve` first so that no insert in between grows it.
   */
  probe(lo: number, hi: number): number {
    const mask = this.slotMask;
    const slots = this.slots;
    const h = hashWords(lo, hi) | 0;
    let i = h & mask;
    for (;;) {
      const r = slots[2 * i]!;
      if (r === NONE) return -2 - i;
      if (slots[2 * i + 1] === h && this.kw[2 * r] === lo && this.kw[2 * r + 1] === hi) return r;
      i = (i + 1) & mask;
    }
  }

  /**
   * Reads the home slot of every key of a call before any is probed. The reads do not depend on
   * each other, so the processor overlaps their cache misses instead of paying them one key at a
   * time inside the call's loop (a slot table of a million keys lives in main memory).
   */
  prefetch(words: Uint32Array, base: number, count: number): void {
    const mask = this.slotMask;
    const slots = this.slots;
    let sink = 0;
    for (let k = base; k < base + 2 * count; k += 2) sink ^= slots[2 * (hashWords(words[k]!, words[k + 1]!) & mask)]!;
    this.prefetched ^= sink;
  }

  /** Room for `count` more keys without the slot table growing. */
  reserve(count: number): void {
    while ((this.inUse + count) / (this.slotMask + 1) > MAX_SLOT_LOAD) this.growSlots();
  }

  /** A new record for a key not held (set = 0, no hint, not in the LRU list yet). */
  insert(lo: number, hi: number): number {
    this.reserve(1);
    return this.insertAt(-2 - this.probe(lo, hi), lo, hi);
  }

  /** A new record in the empty slot `probe` named (after `reserve`). */
  insertAt(slot: number, lo: number, hi: number): number {
    let r: number;
    if (this.freeHead !== NONE) {
      r = this.freeHead;
      this.freeHead = this.lruNext[r]!;
    } else {
      if (this.highWater === this.set.length) this.grow();
      r = this.highWater++;
    }
    this.kw[2 * r] = lo;
    this.kw[2 * r + 1] = hi;
    this.set[r] = 0;
    this.child[r] = NONE;
    this.inUse++;
    this.slots[2 * slot] = r;
    this.slots[2 * slot + 1] = hashWords(lo, hi);
    return r;
  }

  /** Frees a record already unlinked from the LRU list and from its entry set. */
  remove(r: number): void {
    const mask = this.slotMask;
    const slots = this.slots;
    let i = hashWords(this.kw[2 * r]!, this.kw[2 * r + 1]!) & mask;
    while (slots[2 * i] !== r) i = (i + 1) & mask;
    // Backward-shift deletion keeps probe chains intact without tombstones.
    let hole = i;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const other = slots[2 * j]!;
      if (other === NONE) break;
      const home = slots[2 * j + 1]! & mask;
      const movable = hole <= j ? home <= hole || home > j : home <= hole && home > j;
      if (movable) {
        slots[2 * hole] = other;
        slots[2 * hole + 1] = slots[2 * j + 1]!;
        hole = j;
      }
    }
    slots[2 * hole] = NONE;
    this.set[r] = FREE;
    this.lruNext[r] = this.freeHead;
    this.freeHead = r;
    this.inUse--;
  }

  /** The record of a key given its predecessor's: the predecessor's hint when it names the key, else a probe. */
  follow(prev: number, lo: number, hi: number): number {
    if (prev !== NONE) {
      const c = this.child[prev]!;
      if (c >= 0 && this.kw[2 * c] === lo && this.kw[2 * c + 1] === hi && this.set[c]! >= 0) return c;
    }
    const r = this.find(lo, hi);
    // Learn the way: the next walk over this chain compares instead of probing here.
    if (r !== NONE && prev !== NONE) this.child[prev] = r;
    return r;
  }

  // ---- least-recently-used order -------------------------------------------------------------

  /**
   * The run of records touched but not yet moved to the most recently used end. A walk touches a
   * chain's keys in order and they usually sit in order in the list already: each touch then only
   * extends the run, and the run moves at once (`flushTouches`), as touching each key would.
   */
  touchFirst = NONE;
  touchLast = NONE;

  /** Marks a record used (in order with the touches before it). */
  touch(r: number): void {
    if (this.touchLast !== NONE && this.lruNext[this.touchLast] === r) {
      this.touchLast = r;
      return;
    }
    this.flushTouches();
    this.touchFirst = this.touchLast = r;
  }

  /** Links a new record as the most recently used, after the touches before it. */
  touchNew(r: number): void {
    this.flushTouches();
    this.linkTail(r);
    this.touchFirst = this.touchLast = r;
  }

  flushTouches(): void {
    if (this.touchFirst === NONE) return;
    this.moveRangeToTail(this.touchFirst, this.touchLast);
    this.touchFirst = this.touchLast = NONE;
  }

  linkTail(r: number): void {
    this.lruPrev[r] = this.lruTail;
    this.lruNext[r] = NONE;
    if (this.lruTail !== NONE) this.lruNext[this.lruTail] = r;
    else this.lruHead = r;
    this.lruTail = r;
  }

  unlink(r: number): void {
    const prev = this.lruPrev[r]!;
    const next = this.lruNext[r]!;
    if (prev !== NONE) this.lruNext[prev] = next;
    else this.lruHead = next;
    if (next !== NONE) this.lruPrev[next] = prev;
    else this.lruTail = prev;
  }

  /**
   * Moves the run of records first..last (consecutive in the list, in that order) to the most
   * recently used end: the same order as touching each of them in turn, in O(1). Keys of a chain
   * enter the list together and are used together, so a prompt's walk touches a few such runs
   * instead of relinking every key.
   */
  moveRangeToTail(first: number, last: number): void {
    if (last === this.lruTail) return;
    const prev = this.lruPrev[first]!;
    const next = this.lruNext[last]!;
    if (prev !== NONE) this.lruNext[prev] = next;
    else this.lruHead = next;
    this.lruPrev[next] = prev;
    this.lruPrev[first] = this.lruTail;
    this.lruNext[this.lruTail] = first;
    this.lruNext[last] = NONE;
    this.lruTail = last;
  }

  // ---- growth --------------------------------------------------------------------------------

  /**
   * Record arrays grow by half (not double) and never past what the owner can use: at 10 M
   * entries, doubling left ~30% of their memory unused.
   */
  private grow(): void {
    const current = this.set.length;
    const cap = Math.max(current + 1, Math.min(Math.floor(current * 1.5), this.maxRecords + 1024));
    this.kw = grown(this.kw, 2 * cap);
    this.set = grown(this.set, cap, FREE);
    this.child = grown(this.child, cap, NONE);
    this.lruPrev = grown(this.lruPrev, cap);
    this.lruNext = grown(this.lruNext, cap);
    this.onGrow(cap);
  }

  private growSlots(): void {
    const cap = (this.slotMask + 1) * 2;
    const old = this.slots;
    const slots = (this.slots = new Int32Array(2 * cap).fill(NONE));
    const mask = (this.slotMask = cap - 1);
    const homes = new Int32Array(REHASH_BATCH);
    let sink = 0;
    for (let base = 0; base < old.length; base += 2 * REHASH_BATCH) {
      const end = Math.min(old.length, base + 2 * REHASH_BATCH);
      // Homes first, each read once: independent reads whose cache misses overlap.
      for (let s = base; s < end; s += 2) {
        const r = old[s]!;
        const home = r === NONE ? -1 : old[s + 1]! & mask;
        homes[(s - base) >> 1] = home;
        if (home >= 0) sink ^= slots[2 * home]!;
      }
      for (let s = base; s < end; s += 2) {
        let i = homes[(s - base) >> 1]!;
        if (i < 0) continue;
        while (slots[2 * i] !== NONE) i = (i + 1) & mask;
        slots[2 * i] = old[s]!;
        slots[2 * i + 1] = old[s + 1]!;
      }
    }
    this.prefetched ^= sink;
  }
}

export function grown<T extends Int32Array | Uint32Array | Uint8Array | Uint16Array | Float64Array>(old: T, capacity: number, fill?: number): T {
  const next = new (old.constructor as new (n: number) => T)(capacity);
  next.set(old.subarray(0, Math.min(old.length, capacity)) as never);
  if (fill !== undefined && capacity > old.length) next.fill(fill, old.length);
  return next;
}
