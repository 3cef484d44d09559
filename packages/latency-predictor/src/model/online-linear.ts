export interface OnlineLinearOptions {
  /** Number of features (the first is usually the constant 1). */
  dimensions: number;
  /**
   * Weight of the past per observation (exponential forgetting): 0.999 remembers ~1000
   * observations, so the model follows a fleet whose behaviour drifts.
   */
  forgetting: number;
  /** Prior precision of every weight (ridge strength): small = a vague prior. */
  priorPrecision: number;
  /** Observations below this many ms count as this many (relative weighting must not divide by ~0). */
  minTarget: number;
  /** The quantile predicted when the objective is a quantile, e.g. 0.9. */
  quantile: number;
  /** Residual ratios kept to estimate the quantile. */
  residualWindow: number;
}

/**
 * Bayesian linear regression learned one observation at a time: a Gaussian prior on the weights
 * and Gaussian noise make the posterior mean exactly what recursive least squares computes, in
 * O(d²) per observation, with exponential forgetting so old behaviour fades.
 *
 * Observations are weighted by 1/y² — the model minimises *relative* squared error — because
 * routing cares about "twice as slow" whatever the scale, and latencies span 10 ms to 10 s: an
 * unweighted fit would spend itself on the few slow requests. The quantile is the mean
 * prediction times the empirical quantile of recent actual/predicted ratios, which stays
 * calibrated whatever the noise looks like.
 */
export class OnlineLinearModel {
  readonly weights: Float64Array;
  /** Inverse of the (forgetting-weighted) precision matrix, row-major. */
  private readonly p: Float64Array;
  private readonly px: Float64Array;
  private readonly ratios: Float64Array;
  private ratioCount = 0;
  private ratioNext = 0;
  private quantileFactor = 1;
  private sinceQuantile = 0;
  /** Observations learned from. */
  samples = 0;
  private readonly maxTrace: number;

  constructor(private readonly options: OnlineLinearOptions) {
    const d = options.dimensions;
    this.weights = new Float64Array(d);
    this.p = new Float64Array(d * d);
    for (let i = 0; i < d; i++) this.p[i * d + i] = 1 / options.priorPrecision;
    this.px = new Float64Array(d);
    this.ratios = new Float64Array(options.residualWindow);
    // Without excitation in some direction, forgetting inflates P there without bound; capping
    // its trace keeps the update stable (the prior's own uncertainty is the natural ceiling).
    this.maxTrace = d / options.priorPrecision;
  }

  /** The posterior mean prediction. */
  mean(x: ArrayLike<number>): number {
    let y = 0;
    for (let i = 0; i < this.weights.length; i++) y += this.weights[i]! * x[i]!;
    return y;
  }

  /** The configured quantile of the prediction (mean × calibrated residual-ratio quantile). */
  quantile(x: ArrayLike<number>): number {
    return this.mean(x) * this.quantileFactor;
  }

  get calibration(): number {
    return this.quantileFactor;
  }

  learn(x: ArrayLike<number>, observed: number): void {
    const d = this.weights.length;
    const y = Math.max(observed, this.options.minTarget);
    const before = this.mean(x);
    if (this.samples > 0 && before > 0) this.recordRatio(y / before);
    const lambda = this.options.forgetting;
    const p = this.p;
    const px = this.px;
    let xpx = 0;
    for (let i = 0; i < d; i++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += p[i * d + j]! * x[j]!;
      px[i] = s;
      xpx += x[i]! * s;
    }
    // Observation weight 1/y²: the noise variance of this observation is y² (relative error).
    const denom = lambda * y * y + xpx;
    const err = y - before;
    for (let i = 0; i < d; i++) this.weights[i]! += (px[i]! / denom) * err;
    let trace = 0;
    for (let i = 0; i < d; i++) {
      for (let j = 0; j < d; j++) p[i * d + j] = (p[i * d + j]! - (px[i]! * px[j]!) / denom) / lambda;
      trace += p[i * d + i]!;
    }
    if (trace > this.maxTrace) {
      const scale = this.maxTrace / trace;
      for (let k = 0; k < p.length; k++) p[k]! *= scale;
    }
    this.samples++;
  }

  private recordRatio(ratio: number): void {
    if (!Number.isFinite(ratio)) return;
    this.ratios[this.ratioNext] = ratio;
    this.ratioNext = (this.ratioNext + 1) % this.ratios.length;
    if (this.ratioCount < this.ratios.length) this.ratioCount++;
    // Sorting the window on every observation would cost more than the update itself.
    if (++this.sinceQuantile >= 32 || this.ratioCount < 32) {
      this.sinceQuantile = 0;
      const sorted = this.ratios.slice(0, this.ratioCount).sort();
      const at = Math.min(sorted.length - 1, Math.max(0, Math.ceil(this.options.quantile * sorted.length) - 1));
      this.quantileFactor = Math.max(0.5, Math.min(10, sorted[at]!));
    }
  }
}
