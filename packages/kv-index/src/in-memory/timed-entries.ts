import { hashWords } from './hashing.js';
import { grown, NONE } from './key-table.js';

const MAX_LOAD = 0.5;
/** Bytes per timed entry at the table's maximum load (record, code, two times). */
export const TIMED_ENTRY_BYTES = 24 / MAX_LOAD;

/** Keys (as 32-bit word pairs) and the entry codes one add call gave a lifetime to. */
export interface ExpiryBatch {
  readonly words: Uint32Array;
  readonly codes: readonly number[];
}

/**
 * Entries with a lifetime (speculative entries): when each (record, code) was inserted and when it
 * expires, in an open-addressing table, plus a min-heap of expiry times per add call. One call
 * decides for a whole prompt, so it is one heap item (its keys copied once), not one per block;
 * when it falls due, each of its keys is checked against the table, which a later decision may have
 * extended. Decisions may carry their own TTL, so items do not fall due in arrival order.
 */
export class TimedEntries {
  size = 0;
  private rec = new Int32Array(256).fill(NONE);
  private code = new Uint32Array(256);
  private inserted = new Float64Array(256);
  private expires = new Float64Array(256);
  private mask = 255;
  private heapExpiry = new Float64Array(64);
  private heapBatch = new Int32Array(64);
  private heapLen = 0;
  private batches: (ExpiryBatch | undefined)[] = [];
  private readonly freeBatches: number[] = [];

  get bytesAllocated(): number {
    return this.rec.byteLength * 6 + this.heapExpiry.byteLength * 1.5;
  }

  /** The earliest expiry due, or Infinity. */
  get nextExpiry(): number {
    return this.heapLen === 0 ? Infinity : this.heapExpiry[0]!;
  }

  private find(r: number, code: number): number {
    const mask = this.mask;
    let i = hashWords(r, code) & mask;
    for (;;) {
      const at = this.rec[i]!;
      if (at === NONE) return NONE;
      if (at === r && this.code[i] === code) return i;
      i = (i + 1) & mask;
    }
  }

  set(r: number, code: number, insertedAt: number, expiresAt: number): void {
    let i = this.find(r, code);
    if (i === NONE) {
      if ((this.size + 1) / (this.mask + 1) > MAX_LOAD) this.grow();
      i = hashWords(r, code) & this.mask;
      while (this.rec[i] !== NONE) i = (i + 1) & this.mask;
      this.rec[i] = r;
      this.code[i] = code;
      this.size++;
    }
    this.inserted[i] = insertedAt;
    this.expires[i] = expiresAt;
  }

  /** Extends an entry's life to `expiresAt` if that is later (a shorter TTL never cuts it short). */
  extend(r: number, code: number, expiresAt: number): void {
    const i = this.find(r, code);
    if (i !== NONE && expiresAt > this.expires[i]!) this.expires[i] = expiresAt;
  }

  expiresAt(r: number, code: number): number {
    const i = this.find(r, code);
    return i === NONE ? Infinity : this.expires[i]!;
  }

  insertedAt(r: number, code: number): number | undefined {
    const i = this.find(r, code);
    return i === NONE ? undefined : this.inserted[i]!;
  }

  delete(r: number, code: number): void {
    const slot = this.find(r, code);
    if (slot === NONE) return;
    this.size--;
    const mask = this.mask;
    let hole = slot;
    let j = slot;
    for (;;) {
      j = (j + 1) & mask;
      const other = this.rec[j]!;
      if (other === NONE) break;
      const home = hashWords(other, this.code[j]!) & mask;
      const movable = hole <= j ? home <= hole || home > j : home <= hole && home > j;
      if (movable) {
        this.rec[hole] = other;
        this.code[hole] = this.code[j]!;
        this.inserted[hole] = this.inserted[j]!;
        this.expires[hole] = this.expires[j]!;
        hole = j;
      }
    }
    this.rec[hole] = NONE;
  }

  /** Schedules a check of `batch`'s keys at `expiresAt`. */
  schedule(batch: ExpiryBatch, expiresAt: number): void {
    const id = this.freeBatches.pop() ?? this.batches.length;
    this.batches[id] = batch;
    if (this.heapLen === this.heapExpiry.length) {
      this.heapExpiry = grown(this.heapExpiry, this.heapLen * 2);
      this.heapBatch = grown(this.heapBatch, this.heapLen * 2);
    }
    let at = this.heapLen++;
    while (at > 0) {
      const parent = (at - 1) >> 1;
      if (this.heapExpiry[parent]! <= expiresAt) break;
      this.heapExpiry[at] = this.heapExpiry[parent]!;
      this.heapBatch[at] = this.heapBatch[parent]!;
      at = parent;
    }
    this.heapExpiry[at] = expiresAt;
    this.heapBatch[at] = id;
  }

  /** Takes the earliest batch if it is due at `now`. */
  popDue(now: number): ExpiryBatch | undefined {
    if (this.heapLen === 0 || this.heapExpiry[0]! > now) return undefined;
    const id = this.heapBatch[0]!;
    const batch = this.batches[id]!;
    this.batches[id] = undefined;
    this.freeBatches.push(id);
    const last = --this.heapLen;
    if (last > 0) {
      const expiry = this.heapExpiry[last]!;
      const moved = this.heapBatch[last]!;
      let at = 0;
      for (;;) {
        let child = 2 * at + 1;
        if (child >= last) break;
        if (child + 1 < last && this.heapExpiry[child + 1]! < this.heapExpiry[child]!) child++;
        if (this.heapExpiry[child]! >= expiry) break;
        this.heapExpiry[at] = this.heapExpiry[child]!;
        this.heapBatch[at] = this.heapBatch[child]!;
        at = child;
      }
      this.heapExpiry[at] = expiry;
      this.heapBatch[at] = moved;
    }
    return batch;
  }

  private grow(): void {
    const old = { rec: this.rec, code: this.code, inserted: this.inserted, expires: this.expires };
    const cap = (this.mask + 1) * 2;
    this.rec = new Int32Array(cap).fill(NONE);
    this.code = new Uint32Array(cap);
    this.inserted = new Float64Array(cap);
    this.expires = new Float64Array(cap);
    this.mask = cap - 1;
    for (let s = 0; s < old.rec.length; s++) {
      const r = old.rec[s]!;
      if (r === NONE) continue;
      let i = hashWords(r, old.code[s]!) & this.mask;
      while (this.rec[i] !== NONE) i = (i + 1) & this.mask;
      this.rec[i] = r;
      this.code[i] = old.code[s]!;
      this.inserted[i] = old.inserted[s]!;
      this.expires[i] = old.expires[s]!;
    }
  }
}
