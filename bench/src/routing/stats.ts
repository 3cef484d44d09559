/** Linear-interpolated quantile of unsorted values (NaN when there are none). */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/**
 * Quantile of a Prometheus histogram (cumulative counts by upper bound), interpolating linearly
 * inside the bucket as Prometheus's histogram_quantile does; the top finite bound when it falls
 * in +Inf. Coarse by construction: vLLM's TTFT buckets are 1–4× apart above 1 s.
 */
export function histogramQuantile(buckets: ReadonlyMap<number, number>, q: number): number {
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  const total = buckets.get(Number.POSITIVE_INFINITY) ?? 0;
  if (total <= 0) return Number.NaN;
  const rank = q * total;
  let prevBound = 0;
  let prevCount = 0;
  for (const b of bounds) {
    const count = buckets.get(b)!;
    if (count >= rank) {
      if (!Number.isFinite(b)) return prevBound;
      const inBucket = count - prevCount;
      return inBucket <= 0 ? b : prevBound + ((b - prevBound) * (rank - prevCount)) / inBucket;
    }
    prevBound = b;
    prevCount = count;
  }
  return prevBound;
}

/** Bucket-wise difference of two cumulative histograms (after − before). */
export function histogramDelta(after: ReadonlyMap<number, number>, before: ReadonlyMap<number, number>): Map<number, number> {
  const out = new Map<number, number>();
  for (const [b, c] of after) out.set(b, c - (before.get(b) ?? 0));
  return out;
}

/** Bucket-wise sum over pods. */
export function histogramSum(histograms: readonly ReadonlyMap<number, number>[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const h of histograms) for (const [b, c] of h) out.set(b, (out.get(b) ?? 0) + c);
  return out;
}

/** Median and range of a figure over repeated runs. */
export interface Spread {
  median: number;
  min: number;
  max: number;
  count: number;
  values: number[];
}

export function spreadOf(values: readonly number[]): Spread {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, count: 0, values: [...values] };
  return { median: quantile(finite, 0.5), min: Math.min(...finite), max: Math.max(...finite), count: finite.length, values: [...values] };
}
