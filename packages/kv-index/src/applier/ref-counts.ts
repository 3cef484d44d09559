import { hashWords } from '../in-memory/hashing.js';

const MAX_LOAD = 0.7;

/**
 * Counts per (64-bit key, scope) for one pod (see RefCounts). Compact (≈ 17 bytes per tracked
 * key), dropped whole when the pod is cleared.
 */
class CountTable {
  lo = new Uint32Array(256);
  hi = new Uint32Array(256);
  scope = new Uint16Array(256);
  count = new Uint16Array(256);
  mask = 255;
  size = 0;

  private slot(lo: number, hi: number, scope: number): number {
    return (hashWords(lo, hi) ^ Math.imul(scope, 0x27d4eb2d)) & this.mask;
  }

  private find(lo: number, hi: number, scope: number): number {
    let i = this.slot(lo, hi, scope);
    while (this.count[i] !== 0) {
      if (this.lo[i] === lo && this.hi[i] === hi && this.scope[i] === scope) return i;
      i = (i + 1) & this.mask;
    }
    return -1;
  }

  holds(lo: number, hi: number, scope: number): boolean {
    return this.find(lo, hi, scope) >= 0;
  }

  /** Returns true when the key was not counted before. */
  increment(lo: number, hi: number, scope: number): boolean {
    const found = this.find(lo, hi, scope);
    if (found >= 0) {
      if (this.count[found]! < 0xffff) this.count[found]!++;
      return false;
    }
    if ((this.size + 1) / (this.mask + 1) > MAX_LOAD) this.grow();
    let i = this.slot(lo, hi, scope);
    while (this.count[i] !== 0) i = (i + 1) & this.mask;
    this.lo[i] = lo;
    this.hi[i] = hi;
    this.scope[i] = scope;
    this.count[i] = 1;
    this.size++;
    return true;
  }

  /** Decrements; returns true when the removal should reach the index (count hit 0, or never tracked). */
  release(lo: number, hi: number, scope: number): boolean {
    const i = this.find(lo, hi, scope);
    if (i < 0) return true;
    if (this.count[i]! > 1) {
      this.count[i]!--;
      return false;
    }
    this.removeAt(i);
    return true;
  }

  get bytes(): number {
    return this.lo.byteLength * 2 + this.scope.byteLength * 2;
  }

  private removeAt(slot: number): void {
    this.size--;
    let hole = slot;
    let j = slot;
    for (;;) {
      j = (j + 1) & this.mask;
      if (this.count[j] === 0) break;
      const home = this.slot(this.lo[j]!, this.hi[j]!, this.scope[j]!);
      const movable = hole <= j ? home <= hole || home > j : home <= hole && home > j;
      if (movable) {
        this.lo[hole] = this.lo[j]!;
        this.hi[hole] = this.hi[j]!;
        this.scope[hole] = this.scope[j]!;
        this.count[hole] = this.count[j]!;
        hole = j;
      }
    }
    this.count[hole] = 0;
  }

  private grow(): void {
    const old = { lo: this.lo, hi: this.hi, scope: this.scope, count: this.count };
    const cap = (this.mask + 1) * 2;
    this.lo = new Uint32Array(cap);
    this.hi = new Uint32Array(cap);
    this.scope = new Uint16Array(cap);
    this.count = new Uint16Array(cap);
    this.mask = cap - 1;
    for (let s = 0; s < old.count.length; s++) {
      if (old.count[s] === 0) continue;
      let i = this.slot(old.lo[s]!, old.hi[s]!, old.scope[s]!);
      while (this.count[i] !== 0) i = (i + 1) & this.mask;
      this.lo[i] = old.lo[s]!;
      this.hi[i] = old.hi[s]!;
      this.scope[i] = old.scope[s]!;
      this.count[i] = old.count[s]!;
    }
  }
}

/**
 * Per pod, two counts:
 * - announcements of each (tier, group, engine hash), so a block announced twice (vLLM caches
 *   identical blocks twice; offload chunks overlap) is removed on the second removal;
 * - for request keys that an engine block overlaps and reaches past the end of (engine blocks
 *   larger than request blocks, or straddling them), how many held engine blocks do. Distinct
 *   engine blocks can (prompts that share the request block's tokens but not the rest of the
 *   engine block): the request key stays held until the last goes.
 */
export class RefCounts {
  private readonly pods = new Map<string, CountTable>();
  private readonly covers = new Map<string, CountTable>();
  private readonly tierIds = new Map<string, number>();

  /** Tier and group as one 16-bit scope (groups 0–255 and "no group"). */
  scopeOf(tier: string, group: number | null): number {
    let t = this.tierIds.get(tier);
    if (t === undefined) {
      t = this.tierIds.size;
      this.tierIds.set(tier, t);
    }
    return ((t & 0x7f) << 9) | (group === null ? 0x100 : group & 0xff);
  }

  /** Counts one more announcement of each hash. */
  track(pod: string, scope: number, hashes: BigUint64Array): void {
    let table = this.pods.get(pod);
    if (table === undefined) this.pods.set(pod, (table = new CountTable()));
    const words = new Uint32Array(hashes.buffer, hashes.byteOffset, hashes.length * 2);
    for (let i = 0; i < hashes.length; i++) table.increment(words[2 * i]!, words[2 * i + 1]!, scope);
  }

  /** track(), returning per hash 1 when it was not held before. */
  trackFresh(pod: string, scope: number, hashes: BigUint64Array): Uint8Array {
    let table = this.pods.get(pod);
    if (table === undefined) this.pods.set(pod, (table = new CountTable()));
    const words = new Uint32Array(hashes.buffer, hashes.byteOffset, hashes.length * 2);
    const fresh = new Uint8Array(hashes.length);
    for (let i = 0; i < hashes.length; i++) fresh[i] = table.increment(words[2 * i]!, words[2 * i + 1]!, scope) ? 1 : 0;
    return fresh;
  }

  /** Per hash, 1 when the pod holds it (counted) in this scope; nothing is counted. */
  heldMask(pod: string, scope: number, hashes: BigUint64Array): Uint8Array {
    const table = this.pods.get(pod);
    const out = new Uint8Array(hashes.length);
    if (table === undefined) return out;
    const words = new Uint32Array(hashes.buffer, hashes.byteOffset, hashes.length * 2);
    for (let i = 0; i < hashes.length; i++) out[i] = table.holds(words[2 * i]!, words[2 * i + 1]!, scope) ? 1 : 0;
    return out;
  }

  /** One more held engine block reaches past the end of each of these request keys. */
  cover(pod: string, scope: number, requestKeys: BigUint64Array): void {
    let table = this.covers.get(pod);
    if (table === undefined) this.covers.set(pod, (table = new CountTable()));
    const words = new Uint32Array(requestKeys.buffer, requestKeys.byteOffset, requestKeys.length * 2);
    for (let i = 0; i < requestKeys.length; i++) table.increment(words[2 * i]!, words[2 * i + 1]!, scope);
  }

  /** Whether any request key of the pod is counted by cover(). */
  hasCovers(pod: string): boolean {
    return (this.covers.get(pod)?.size ?? 0) > 0;
  }

  /** An engine block reaching past this request key went: true when none is left (or none was counted). */
  uncover(pod: string, scope: number, requestKey: bigint): boolean {
    const table = this.covers.get(pod);
    if (table === undefined) return true;
    return table.release(Number(requestKey & 0xffffffffn), Number(requestKey >> 32n), scope);
  }

  /** The hashes whose last announcement this removal releases (the others are suppressed). */
  release(pod: string, scope: number, hashes: BigUint64Array): bigint[] {
    const table = this.pods.get(pod);
    if (table === undefined) return Array.from(hashes);
    const words = new Uint32Array(hashes.buffer, hashes.byteOffset, hashes.length * 2);
    const out: bigint[] = [];
    for (let i = 0; i < hashes.length; i++) if (table.release(words[2 * i]!, words[2 * i + 1]!, scope)) out.push(hashes[i]!);
    return out;
  }

  clear(pod: string): void {
    this.pods.delete(pod);
    this.covers.delete(pod);
  }

  get bytes(): number {
    let total = 0;
    for (const t of this.pods.values()) total += t.bytes;
    for (const t of this.covers.values()) total += t.bytes;
    return total;
  }
}
