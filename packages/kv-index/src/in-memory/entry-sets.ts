import { groupOf, hasGroupCode, isSpeculativeCode, podAndGroup, podOf, tierOf } from '../entry-codes.js';
import { grown, NONE } from './key-table.js';

/** The id of the empty set (a key holding nothing is not kept; the id only starts and ends walks). */
export const EMPTY_SET = 0;

/** Bytes a live set costs beyond its codes (its JS array, interning string, transition map, per-set slots). */
export const SET_BYTES = 192;

/** What adding one entry code to a key holding set `from` does. */
export interface AddTransition {
  /** The key's set afterwards. */
  readonly to: number;
  /** 1 when the entry is new under the key. */
  readonly admitted: 0 | 1;
  /** The very same speculative entry was already held: its life may be extended. */
  readonly extends: boolean;
  /** Speculative entries this real entry confirms (and replaces), or null. */
  readonly confirms: Uint32Array | null;
}

/** Codes of a set are kept sorted by pod, then tier, then speculation, then group. */
function sortKey(code: number): number {
  return podOf(code) * 65536 + tierOf(code) * 1024 + (isSpeculativeCode(code) ? 512 : 0) + (hasGroupCode(code) ? 256 : 0) + groupOf(code);
}

const bySortKey = (a: number, b: number): number => sortKey(a) - sortKey(b);

/**
 * The entries of a key, as an interned set: every key holding exactly the same entries (the same
 * pods, tiers, speculation and groups) points at one set id. A fleet holds few distinct sets —
 * a prompt's blocks are held by the same few pods — so a key costs one 32-bit set id instead of a
 * node per entry, and a walk over a prompt sees the same set for a whole run of keys: each pod's
 * depth and tiers are accounted once per run, not once per key.
 *
 * Changing a key's entries moves it to another set through a cached transition (set, code) → set,
 * so a BlockStored of N blocks costs N id writes, not N set computations. Each set keeps the list
 * of its keys (intrusive links per record), which makes clear(pod) proportional to the pod's
 * entries: the sets holding a pod are known, and each moves its whole list at once.
 *
 * Sets no key holds any more stay interned (a later key may return to them) until they outnumber
 * the live ones; then they are collected and every cached transition is dropped.
 */
export class EntrySets {
  /** Sorted codes per set id (undefined for free ids). */
  codes: (Uint32Array | undefined)[] = [new Uint32Array(0)];
  /** Keys holding each set. */
  refs = new Int32Array(64);
  /** Each set's key list: first and last record. */
  head = new Int32Array(64).fill(NONE);
  tail = new Int32Array(64).fill(NONE);
  /** Per record: links in its set's key list. */
  memPrev: Int32Array;
  memNext: Int32Array;
  /** Sets with at least one key, and their codes in total (for capacity accounting). */
  live = 0;
  liveCodes = 0;
  private dead = 0;
  private readonly interned = new Map<string, number>();
  private internKey: (string | undefined)[] = [''];
  private addCache: (Map<number, AddTransition> | undefined)[] = [];
  private removeCache: (Map<number, number> | undefined)[] = [];
  private readonly freeIds: number[] = [];
  /** Per pod id, the sets naming it (live or not yet collected). */
  private readonly podSets: (Set<number> | undefined)[] = [];

  constructor(recordCapacity: number) {
    this.memPrev = new Int32Array(recordCapacity);
    this.memNext = new Int32Array(recordCapacity);
  }

  get bytesAllocated(): number {
    return this.memPrev.byteLength * 2 + this.refs.byteLength * 3 + (this.codes.length - this.freeIds.length) * SET_BYTES + this.liveCodes * 4;
  }

  growRecords(capacity: number): void {
    this.memPrev = grown(this.memPrev, capacity);
    this.memNext = grown(this.memNext, capacity);
  }

  /** The set after adding one entry code (cached per set and code). */
  add(from: number, code: number): AddTransition {
    let cache = this.addCache[from];
    if (cache === undefined) this.addCache[from] = cache = new Map();
    let t = cache.get(code);
    if (t === undefined) {
      t = this.computeAdd(from, code);
      cache.set(code, t);
    }
    return t;
  }

  /** The set after removing one entry code (the same set when it does not hold it). */
  remove(from: number, code: number): number {
    let cache = this.removeCache[from];
    if (cache === undefined) this.removeCache[from] = cache = new Map();
    let to = cache.get(code);
    if (to === undefined) {
      const codes = this.codes[from]!;
      to = codes.includes(code) ? this.intern(codes.filter((c) => c !== code)) : from;
      cache.set(code, to);
    }
    return to;
  }

  /** The set without any entry of one pod. */
  withoutPod(from: number, pod: number): number {
    return this.intern(this.codes[from]!.filter((c) => podOf(c) !== pod));
  }

  /** Sets that name a pod (some may have no key: check refs). */
  setsOfPod(pod: number): readonly number[] {
    const sets = this.podSets[pod];
    return sets === undefined ? [] : [...sets];
  }

  // ---- key lists -----------------------------------------------------------------------------

  /** Appends record r to set s's key list and counts it. */
  join(r: number, s: number): void {
    const t = this.tail[s]!;
    this.memPrev[r] = t;
    this.memNext[r] = NONE;
    if (t !== NONE) this.memNext[t] = r;
    else this.head[s] = r;
    this.tail[s] = r;
    this.ref(s, 1);
  }

  /** Takes record r out of set s's key list and uncounts it. */
  leave(r: number, s: number): void {
    const prev = this.memPrev[r]!;
    const next = this.memNext[r]!;
    if (prev !== NONE) this.memNext[prev] = next;
    else this.head[s] = next;
    if (next !== NONE) this.memPrev[next] = prev;
    else this.tail[s] = prev;
    this.ref(s, -1);
  }

  /** Moves every key of set `from` to set `to` (their records' set ids are the caller's). */
  moveAll(from: number, to: number): void {
    const first = this.head[from]!;
    if (first === NONE) return;
    const n = this.refs[from]!;
    const t = this.tail[to]!;
    this.memPrev[first] = t;
    if (t !== NONE) this.memNext[t] = first;
    else this.head[to] = first;
    this.tail[to] = this.tail[from]!;
    this.head[from] = NONE;
    this.tail[from] = NONE;
    this.ref(from, -n);
    this.ref(to, n);
  }

  private ref(s: number, delta: number): void {
    if (s === EMPTY_SET) return;
    const before = this.refs[s]!;
    const after = before + delta;
    this.refs[s] = after;
    if (before === 0 && after > 0) {
      this.live++;
      this.dead--;
      this.liveCodes += this.codes[s]!.length;
    } else if (before > 0 && after === 0) {
      this.live--;
      this.dead++;
      this.liveCodes -= this.codes[s]!.length;
    }
  }

  /**
   * Frees the sets no key holds once they outnumber the live ones (and every cached transition,
   * since some lead to them). Call only between operations: a transition held by a caller may
   * name a set freed here.
   */
  collect(): void {
    if (this.dead <= 1024 || this.dead <= this.live) return;
    for (let s = 1; s < this.codes.length; s++) {
      const codes = this.codes[s];
      if (codes === undefined || this.refs[s]! > 0) continue;
      this.interned.delete(this.internKey[s]!);
      this.internKey[s] = undefined;
      for (const c of codes) this.podSets[podOf(c)]?.delete(s);
      this.codes[s] = undefined;
      this.freeIds.push(s);
    }
    this.dead = 0;
    this.addCache = [];
    this.removeCache = [];
  }

  // ---- interning -----------------------------------------------------------------------------

  private computeAdd(from: number, code: number): AddTransition {
    const codes = this.codes[from]!;
    if (codes.includes(code)) return { to: from, admitted: 0, extends: isSpeculativeCode(code), confirms: null };
    const pod = podOf(code);
    const tier = tierOf(code);
    const owner = podAndGroup(code);
    if (isSpeculativeCode(code)) {
      // A decision to a pod that really holds the key in that tier adds nothing. A decision knows
      // no KV-cache group, while engines report one: a group-less speculation stands for any group.
      for (const c of codes) {
        if (podOf(c) === pod && !isSpeculativeCode(c) && tierOf(c) === tier && (!hasGroupCode(code) || podAndGroup(c) === owner)) {
          return { to: from, admitted: 0, extends: false, confirms: null };
        }
      }
      return { to: this.intern([...codes, code]), admitted: 1, extends: false, confirms: null };
    }
    // The engine's entry confirms every speculation of the same pod and tier it stands for: a
    // group-less decision and one naming this group may both be waiting for it.
    const confirmed = codes.filter((c) => isSpeculativeCode(c) && podOf(c) === pod && tierOf(c) === tier && (!hasGroupCode(c) || podAndGroup(c) === owner));
    const kept = confirmed.length === 0 ? [...codes] : codes.filter((c) => !confirmed.includes(c));
    return { to: this.intern([...kept, code]), admitted: 1, extends: false, confirms: confirmed.length === 0 ? null : Uint32Array.from(confirmed) };
  }

  private intern(codes: ArrayLike<number> & Iterable<number>): number {
    if (codes.length === 0) return EMPTY_SET;
    const sorted = Uint32Array.from(codes).sort(bySortKey);
    const key = sorted.join(',');
    const existing = this.interned.get(key);
    if (existing !== undefined) return existing;
    const s = this.freeIds.pop() ?? this.codes.length;
    if (s >= this.refs.length) {
      const cap = Math.max(64, this.refs.length * 2);
      this.refs = grown(this.refs, cap);
      this.head = grown(this.head, cap, NONE);
      this.tail = grown(this.tail, cap, NONE);
    }
    this.codes[s] = sorted;
    this.internKey[s] = key;
    this.interned.set(key, s);
    this.refs[s] = 0;
    this.head[s] = NONE;
    this.tail[s] = NONE;
    this.dead++;
    for (const c of sorted) {
      const pod = podOf(c);
      let sets = this.podSets[pod];
      if (sets === undefined) this.podSets[pod] = sets = new Set();
      sets.add(s);
    }
    return s;
  }
}
