import type { Logger } from 'pino';
import type { RemotePredictor } from './client/remote-predictor.js';
import { PredictorError } from './errors.js';
import type { PredictorMetrics } from './metrics.js';
import type { BuiltinPredictor } from './model/builtin-predictor.js';
import type { LatencyPredictor, PredictionBatch, PredictorDescription } from './predictor.js';
import type { PredictionRow, TrainingEntry } from './wire.js';

/**
 * A remote predictor with the built-in model behind it: both learn from every training entry, so
 * when the prediction servers time out, refuse or have their circuit open, the built-in model
 * answers at once with a model of the same fleet — routing never waits on an outage twice and
 * never fails because of one.
 */
export class FallbackPredictor implements LatencyPredictor {
  private fallingBack = false;

  constructor(
    readonly primary: RemotePredictor,
    readonly fallback: BuiltinPredictor,
    private readonly deps: { logger: Logger; metrics?: PredictorMetrics | null },
  ) {}

  async predict(rows: readonly PredictionRow[]): Promise<PredictionBatch> {
    try {
      const out = await this.primary.predict(rows);
      if (this.fallingBack) {
        this.fallingBack = false;
        this.deps.logger.info('prediction servers answer again; built-in fallback no longer used');
      }
      return out;
    } catch (err) {
      const code = err instanceof PredictorError ? err.code : 'BAD_RESPONSE';
      if (code === 'CLOSED') throw err;
      this.deps.metrics?.fallbacks.inc({ reason: code });
      if (!this.fallingBack) {
        this.fallingBack = true;
        this.deps.logger.warn({ code, err: (err as Error).message }, 'prediction servers failed; predicting with the built-in model');
      }
      return this.fallback.predict(rows);
    }
  }

  train(entries: readonly TrainingEntry[]): void {
    this.primary.train(entries);
    this.fallback.train(entries);
  }

  learnFromPeers(entries: readonly TrainingEntry[]): void {
    // The peers sent theirs to the training server; the fallback model here learns from them too.
    this.fallback.learnFromPeers(entries);
  }

  describe(): PredictorDescription {
    const remote = this.primary.describe();
    return { ...remote, kind: 'remote+builtin', ready: remote.ready || this.fallback.ready, samples: this.fallback.describe().samples };
  }

  async close(): Promise<void> {
    await Promise.all([this.primary.close(), this.fallback.close()]);
  }
}
