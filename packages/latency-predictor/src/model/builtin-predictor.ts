import { z } from 'zod';
import { PredictorError } from '../errors.js';
import type { LatencyPredictor, Prediction, PredictionBatch, PredictorDescription } from '../predictor.js';
import { BUILTIN_MODEL_TYPE, type PredictionRow, type TrainingEntry } from '../wire.js';
import { TPOT_FEATURES, TTFT_FEATURES, type FeatureMap } from './features.js';
import { OnlineLinearModel } from './online-linear.js';

export const BuiltinModelConfigSchema = z
  .object({
    /** Predict a quantile of the latency (llm-d's default: p90) or its mean. */
    objective: z.enum(['quantile', 'mean']).default('quantile'),
    quantile: z.number().gt(0).lt(1).default(0.9),
    /** Observations before the model answers (until then predictions fail with NOT_READY). */
    minSamples: z.number().int().min(1).default(20),
    /** Weight of the past per observation; 0.999 remembers ~1000 observations. */
    forgetting: z.number().gt(0.9).max(1).default(0.999),
    /** Observations whose actual/predicted ratios calibrate the quantile. */
    residualWindow: z.number().int().min(16).max(100_000).default(1024),
  })
  .strict();

export type BuiltinModelConfig = z.output<typeof BuiltinModelConfigSchema>;
export type BuiltinModelConfigInput = z.input<typeof BuiltinModelConfigSchema>;

/** One latency model: its features and the regression. */
export interface ModelSnapshot {
  samples: number;
  /** Per raw feature (llm-d's naming), the weight in ms per raw unit; `intercept` in ms. */
  coefficients: Record<string, number>;
  /** Quantile prediction = mean × this. */
  calibration: number;
}

class LatencyModel {
  readonly model: OnlineLinearModel;
  private readonly x: Float64Array;

  constructor(
    readonly features: FeatureMap,
    config: BuiltinModelConfig,
  ) {
    this.model = new OnlineLinearModel({
      dimensions: features.names.length,
      forgetting: config.forgetting,
      // Observations weigh 1/y² (y in ms, ~10²–10⁴), so the prior must be vaguer still or it
      // would outweigh the first hundred observations.
      priorPrecision: 1e-7,
      minTarget: 1,
      quantile: config.quantile,
      residualWindow: config.residualWindow,
    });
    this.x = new Float64Array(features.names.length);
  }

  predict(row: PredictionRow, quantile: boolean): number {
    const x = this.features.fill(row, this.x);
    return Math.max(0, quantile ? this.model.quantile(x) : this.model.mean(x));
  }

  learn(row: PredictionRow, observed: number): void {
    this.model.learn(this.features.fill(row, this.x), observed);
  }

  snapshot(): ModelSnapshot {
    const coefficients: Record<string, number> = {};
    this.features.names.forEach((name, i) => (coefficients[name] = this.model.weights[i]! * this.features.scales[i]!));
    return { samples: this.model.samples, coefficients, calibration: this.model.calibration };
  }
}

/**
 * The latency predictor kvix carries itself: two online Bayesian linear regressions (TTFT and
 * TPOT) over llm-d's features, learning from every training entry the moment it arrives — there
 * is no batch retraining to wait for. Used when no predictor server is configured or as the
 * fallback when it is unreachable, and served over llm-d's HTTP API by kvix-latency-predictor.
 */
export class BuiltinPredictor implements LatencyPredictor {
  private readonly ttft: LatencyModel;
  private readonly tpot: LatencyModel;
  private lastUpdate: Date | null = null;

  constructor(readonly config: BuiltinModelConfig) {
    this.ttft = new LatencyModel(TTFT_FEATURES, config);
    this.tpot = new LatencyModel(TPOT_FEATURES, config);
  }

  get ready(): boolean {
    return this.ttft.model.samples >= this.config.minSamples;
  }

  /** When the model last learned (llm-d's `last_model_load`). */
  get lastModelLoad(): Date | null {
    return this.lastUpdate;
  }

  async predict(rows: readonly PredictionRow[]): Promise<PredictionBatch> {
    return { predictions: this.predictNow(rows), source: 'builtin' };
  }

  /** Synchronous predictions (the model is in this process); throws NOT_READY before `minSamples` observations. */
  predictNow(rows: readonly PredictionRow[]): Prediction[] {
    if (!this.ready) throw new PredictorError('NOT_READY', `the built-in latency model has learned from ${this.ttft.model.samples} of the ${this.config.minSamples} TTFT observations it needs`);
    const quantile = this.config.objective === 'quantile';
    // An untrained TPOT model would answer noise; 0 lets a TPOT SLO pass rather than shed on it.
    const tpotReady = this.tpot.model.samples >= this.config.minSamples;
    return rows.map((row) => ({ ttftMs: this.ttft.predict(row, quantile), tpotMs: tpotReady ? this.tpot.predict(row, quantile) : 0 }));
  }

  train(entries: readonly TrainingEntry[]): void {
    for (const e of entries) {
      if (e.actual_ttft_ms > 0) this.ttft.learn(e, e.actual_ttft_ms);
      if (e.actual_tpot_ms > 0) this.tpot.learn(e, e.actual_tpot_ms);
    }
    if (entries.length > 0) this.lastUpdate = new Date();
  }

  learnFromPeers(entries: readonly TrainingEntry[]): void {
    this.train(entries);
  }

  snapshot(): { ttft: ModelSnapshot; tpot: ModelSnapshot } {
    return { ttft: this.ttft.snapshot(), tpot: this.tpot.snapshot() };
  }

  describe(): PredictorDescription {
    return {
      kind: 'builtin',
      ready: this.ready,
      modelType: BUILTIN_MODEL_TYPE,
      objective: this.config.objective,
      quantile: this.config.quantile,
      samples: { ttft: this.ttft.model.samples, tpot: this.tpot.model.samples },
    };
  }

  async close(): Promise<void> {}
}
