import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { RemotePredictor } from './client/remote-predictor.js';
import type { LatencyPredictorConfig } from './config.js';
import { FallbackPredictor } from './fallback-predictor.js';
import { PredictorMetrics } from './metrics.js';
import { BuiltinPredictor } from './model/builtin-predictor.js';
import type { LatencyPredictor } from './predictor.js';

export interface CreatePredictorDeps {
  logger: Logger;
  /** Where the client's metrics go; none when null. */
  registry: Registry | null;
  random?: () => number;
}

/**
 * The predictor a configuration asks for: the built-in model alone when no server URL is set,
 * otherwise the remote client (started: timers running, first snapshot taken) with the built-in
 * model as its fallback unless `fallbackToBuiltin` is off.
 */
export async function createLatencyPredictor(config: LatencyPredictorConfig, deps: CreatePredictorDeps): Promise<LatencyPredictor> {
  const builtin = new BuiltinPredictor(config.builtin);
  if (config.predictionUrls.length === 0 && config.trainingUrl === undefined) {
    deps.logger.info({ objective: config.builtin.objective, quantile: config.builtin.quantile, minSamples: config.builtin.minSamples }, 'latency predictor: built-in model in this process');
    return builtin;
  }
  const metrics = deps.registry ? new PredictorMetrics(deps.registry) : null;
  const remote = new RemotePredictor(config, { logger: deps.logger, metrics, ...(deps.random ? { random: deps.random } : {}) });
  await remote.start();
  deps.logger.info({ predictionUrls: config.predictionUrls, trainingUrl: config.trainingUrl ?? config.predictionUrls[0], fallbackToBuiltin: config.fallbackToBuiltin }, 'latency predictor: remote servers');
  return config.fallbackToBuiltin ? new FallbackPredictor(remote, builtin, { logger: deps.logger, metrics }) : remote;
}
