import { hashWords } from './hashing.js';

export const NONE = -1;
/** `set` of a free record (live records hold an entry-set id ≥ 0). */
export const FREE = -2;
const MAX_SLOT_LOAD = 0.7;

/** Typed-array bytes per request key: 6 × 4 here, 2 × 4 of set membership, and a slot at 70% load. */
export const KEY_BYTES = 32 + 4 / MAX_SLOT_LOAD;

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
  private slots = new Int32Array(2048).fill(NONE);
  private slotMask = 2047;
  private freeHead = NONE;
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
    return this.set.byteLength * 6 + this.slots.byteLength;
  }

  find(lo: number, hi: number): number {
    const mask = this.slotMask;
    const slots = this.slots;
    let i = hashWords(lo, hi) & mask;
    for (;;) {
      const r = slots[i]!;
      if (r === NONE) return NONE;
      if (this.kw[2 * r] === lo && this.kw[2 * r + 1] === hi) return r;
      i = (i + 1) & mask;
    }
  }

  /** A new record for a key not held (set = 0, no hint, not in the LRU list yet). */
  insert(lo: number, hi: number): number {
    if ((this.inUse + 1) / (this.slotMask + 1) > MAX_SLOT_LOAD) this.growSlots();
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
    const mask = this.slotMask;
    let i = hashWords(lo, hi) & mask;
    while (this.slots[i] !== NONE) i = (i + 1) & mask;
    this.slots[i] = r;
    return r;
  }

  /** Frees a record already unlinked from the LRU list and from its entry set. */
  remove(r: number): void {
    const mask = this.slotMask;
    let i = hashWords(this.kw[2 * r]!, this.kw[2 * r + 1]!) & mask;
    while (this.slots[i] !== r) i = (i + 1) & mask;
    // Backward-shift deletion keeps probe chains intact without tombstones.
    let hole = i;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const other = this.slots[j]!;
      if (other === NONE) break;
      const home = hashWords(this.kw[2 * other]!, this.kw[2 * other + 1]!) & mask;
      const movable = hole <= j ? home <= hole || home > j : home <= hole && home > j;
      if (movable) {
        this.slots[hole] = other;
        hole = j;
      }
    }
    this.slots[hole] = NONE;
    this.set[r] = FREE;
    this.lruNext[r] = this.freeHead;
    this.freeHead = r;
    this.inUse--;
  }

  // ---- least-recently-used order -------------------------------------------------------------

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
    this.slots = new Int32Array(cap).fill(NONE);
    this.slotMask = cap - 1;
    for (let s = 0; s < old.length; s++) {
      const r = old[s]!;
      if (r === NONE) continue;
      let i = hashWords(this.kw[2 * r]!, this.kw[2 * r + 1]!) & this.slotMask;
      while (this.slots[i] !== NONE) i = (i + 1) & this.slotMask;
      this.slots[i] = r;
    }
  }
}

export function grown<T extends Int32Array | Uint32Array | Uint8Array | Uint16Array | Float64Array>(old: T, capacity: number, fill?: number): T {
  const next = new (old.constructor as new (n: number) => T)(capacity);
  next.set(old.subarray(0, Math.min(old.length, capacity)) as never);
  if (fill !== undefined && capacity > old.length) next.fill(fill, old.length);
  return next;
}
