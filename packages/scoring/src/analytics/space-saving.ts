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
    return [...this.heap].sort((a, b) => b.count - a.count || a.error - b.error);
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
