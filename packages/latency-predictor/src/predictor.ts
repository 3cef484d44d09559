import type { PredictionRow, TrainingEntry } from './wire.js';

/** One row's predicted latencies, in milliseconds (the model's objective: a quantile or the mean). */
export interface Prediction {
  ttftMs: number;
  tpotMs: number;
}

export interface PredictionBatch {
  /** One per row, in order. */
  predictions: Prediction[];
  /** Who answered: a prediction server, or the built-in model (directly or as the fallback). */
  source: 'remote' | 'builtin';
}

export interface PredictorDescription {
  /** 'builtin', 'remote', or 'remote+builtin' (remote with the built-in model as fallback). */
  kind: string;
  ready: boolean;
  modelType: string;
  objective: 'quantile' | 'mean';
  quantile: number;
  /** Observations the built-in model learned from (TTFT, TPOT); null for a remote-only predictor. */
  samples: { ttft: number; tpot: number } | null;
  /** Remote predictor state: URLs, circuit states, the last model snapshot. */
  remote?: Record<string, unknown>;
}

/**
 * What the router needs from a latency predictor, wherever the model runs: bulk predictions for a
 * request's candidate pods, and every completed request's observed latencies to learn from.
 * `predict` rejects with a `PredictorError` when no prediction can be had; `train` never blocks
 * and never throws (entries are buffered or applied at once).
 */
export interface LatencyPredictor {
  predict(rows: readonly PredictionRow[]): Promise<PredictionBatch>;
  train(entries: readonly TrainingEntry[]): void;
  /**
   * Observations another process of the same router made (a routing worker's), which that process
   * already sent to any training server itself: only a model in this process learns from them.
   */
  learnFromPeers(entries: readonly TrainingEntry[]): void;
  describe(): PredictorDescription;
  close(): Promise<void>;
}
