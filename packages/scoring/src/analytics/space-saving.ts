/**
 * Space-Saving heavy hitters (Metwally et al.): at most `capacity` counters; a new item replaces
 * the least-counted one and inherits its count as its error bound. Any item seen more than
 * N / capacity times is guaranteed to be held, and its count overestimates by at most `error`.
 * Counters sit in a binary min-heap so an update costs O(log capacity).
 */
export interface HeavyHitter<V> {
  key: bigint;
  count: number;
  /** The count may overestimate the true count by up to this much. */
  error: number;
  value: V;
}

/**
 * A sketch as plain data (copied items, no methods): what crosses a process boundary to be merged
 * with other sketches of the same kind.
 */
export interface SpaceSavingState<V> {
  /** Items observed (with multiplicity). */
  observed: number;
  /**
   * Every item not listed was seen at most this many times: a full sketch's smallest count (what an
   * evicted item can have reached), 0 while it has never evicted (an unlisted item was never seen).
   */
  unlistedBound: number;
  /** Most counted first. */
  items: HeavyHitter<V>[];
}

export class SpaceSaving<V> {
  private readonly heap: HeavyHitter<V>[] = [];
  private readonly position = new Map<bigint, number>();
  private total = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
  }

  /** Items observed (with multiplicity). */
  get observed(): number {
    return this.total;
  }

  get size(): number {
    return this.heap.length;
  }

  /** Counts one occurrence of `key`; `init` supplies the value when the key becomes tracked. */
  add(key: bigint, init: () => V): HeavyHitter<V> {
    this.total++;
    const at = this.position.get(key);
    if (at !== undefined) {
      const item = this.heap[at]!;
      item.count++;
      this.siftDown(at);
      return item;
    }
    if (this.heap.length < this.capacity) {
      const item: HeavyHitter<V> = { key, count: 1, error: 0, value: init() };
      this.heap.push(item);
      this.position.set(key, this.heap.length - 1);
      this.siftUp(this.heap.length - 1);
      return item;
    }
    const min = this.heap[0]!;
    this.position.delete(min.key);
    const item: HeavyHitter<V> = { key, count: min.count + 1, error: min.count, value: init() };
    this.heap[0] = item;
    this.position.set(key, 0);
    this.siftDown(0);
    return item;
  }

  get(key: bigint): HeavyHitter<V> | undefined {
    const at = this.position.get(key);
    return at === undefined ? undefined : this.heap[at];
  }

  /** Every tracked item, most counted first. */
  top(): HeavyHitter<V>[] {
    return [...this.heap].sort(mostCounted);
  }

  /** A copy of the sketch as plain data; `copy` copies an item's value. */
  state(copy: (value: V) => V): SpaceSavingState<V> {
    const full = this.heap.length >= this.capacity;
    return { observed: this.total, unlistedBound: full ? this.heap[0]!.count : 0, items: this.top().map((h) => ({ key: h.key, count: h.count, error: h.error, value: copy(h.value) })) };
  }

  clear(): void {
    this.heap.length = 0;
    this.position.clear();
    this.total = 0;
  }

  private siftUp(i: number): void {
    const h = this.heap;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent]!.count <= h[i]!.count) return;
      this.swap(i, parent);
      i = parent;
    }
  }

  private siftDown(i: number): void {
    const h = this.heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && h[l]!.count < h[m]!.count) m = l;
      if (r < h.length && h[r]!.count < h[m]!.count) m = r;
      if (m === i) return;
      this.swap(i, m);
      i = m;
    }
  }

  private swap(a: number, b: number): void {
    const h = this.heap;
    const t = h[a]!;
    h[a] = h[b]!;
    h[b] = t;
    this.position.set(h[a]!.key, a);
    this.position.set(h[b]!.key, b);
  }
}

/**
 * Sketches of disjoint streams (each process counting its own requests) merged into one sketch of
 * the whole stream: for every item listed anywhere, its count is the sum over sketches of its count
 * where listed, or of that sketch's `unlistedBound` where not (the most it can have been seen there),
 * and its error grows by the same bounds. So, as for one sketch, the count never underestimates the
 * true total and overestimates it by at most `error`. An item listed in no sketch is left out; its
 * total is at most the sum of the bounds (≤ N / capacity when every sketch has one capacity), so any
 * item more frequent than that is listed, the guarantee of one sketch over the whole stream. What a
 * merge loses against that one sketch: counts of items some sketches evicted become ranges (wider
 * `error`), and which of two near-equal items ranks first may differ. Nothing is trimmed: the merge
 * lists the union. `combine` picks the value of an item listed in several sketches.
 */
export function mergeSpaceSaving<V>(states: readonly SpaceSavingState<V>[], combine: (a: V, b: V) => V): SpaceSavingState<V> {
  const merged = new Map<bigint, HeavyHitter<V>>();
  for (const state of states) {
    for (const item of state.items) {
      const held = merged.get(item.key);
      if (held === undefined) merged.set(item.key, { key: item.key, count: 0, error: 0, value: item.value });
      else held.value = combine(held.value, item.value);
    }
  }
  for (const state of states) {
    const listed = new Map(state.items.map((h) => [h.key, h]));
    for (const [key, item] of merged) {
      const here = listed.get(key);
      item.count += here ? here.count : state.unlistedBound;
      item.error += here ? here.error : state.unlistedBound;
    }
  }
  const items = [...merged.values()].sort(mostCounted);
  return { observed: states.reduce((n, s) => n + s.observed, 0), unlistedBound: states.reduce((n, s) => n + s.unlistedBound, 0), items };
}

/** Most counted first, then the tightest count; ties by key, so that a sketch and a merge of its parts list equal items alike. */
function mostCounted<V>(a: HeavyHitter<V>, b: HeavyHitter<V>): number {
  return b.count - a.count || a.error - b.error || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
}
