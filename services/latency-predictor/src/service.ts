import { BuiltinPredictor, startPredictorServer, type RunningPredictorServer } from '@kvix/latency-predictor';
import type { Logger } from 'pino';
import type { PredictorServiceConfig } from './config.js';

/**
 * llm-d's latency predictor, prediction and training servers in one process, backed by the
 * built-in online model: an EPP (kvix's or llm-d's Go client) points PREDICTION_SERVER_URL and
 * TRAINING_SERVER_URL here, sends every completed request's latencies, and gets bulk predictions
 * that already include them — no retraining interval, no Python.
 */
export class PredictorService {
  private stopping: Promise<void> | null = null;
  private readonly watch: NodeJS.Timeout;

  private constructor(
    readonly config: PredictorServiceConfig,
    readonly model: BuiltinPredictor,
    private readonly server: RunningPredictorServer,
    private readonly logger: Logger,
  ) {
    // One log line when the model starts answering, not one per training batch.
    let ready = model.ready;
    this.watch = setInterval(() => {
      if (model.ready === ready) return;
      ready = model.ready;
      logger.info({ samples: model.describe().samples }, ready ? 'latency model ready: predictions are served' : 'latency model not ready');
    }, 1000);
    this.watch.unref();
  }

  static async start(config: PredictorServiceConfig, logger: Logger): Promise<PredictorService> {
    const model = new BuiltinPredictor(config.model);
    const server = await startPredictorServer({ model, host: config.http.host, port: config.http.port, predictionPort: config.predictionPort, listener: config.http });
    const service = new PredictorService(config, model, server, logger);
    logger.info({ trainingUrl: server.trainingUrl, predictionUrl: server.predictionUrl, objective: config.model.objective, quantile: config.model.quantile, minSamples: config.model.minSamples }, 'latency predictor started');
    return service;
  }

  get trainingUrl(): string {
    return this.server.trainingUrl;
  }

  get predictionUrl(): string {
    return this.server.predictionUrl;
  }

  /** /readyz turns 503, requests in flight finish, the listeners close. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      clearInterval(this.watch);
      await this.server.close();
      this.logger.info({ samples: this.model.describe().samples }, 'latency predictor stopped');
    })();
    return this.stopping;
  }
}
