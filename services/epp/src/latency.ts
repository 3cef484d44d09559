import { sendError } from '@kvix/service-kit';
import { createLatencyPredictor, LatencyPredictorConfigSchema, type LatencyPredictor } from '@kvix/latency-predictor';
import { InFlightTokens, LatencyRoutingMetrics, usesLatencyPredictor, withPredictedLatency, type EndpointPickerConfigInput, type LatencyPluginDeps } from '@kvix/scheduler';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { z } from 'zod';

/** The EPP's `latencyPredictor` section: the predictor settings plus whether to route on predicted latency at all. */
export const EppLatencyPredictorSchema = LatencyPredictorConfigSchema.extend({
  /** Route SLO requests on predicted latency (implied by prediction/training URLs or latency plugins in the scheduler config). */
  enabled: z.boolean().default(false),
});

export type EppLatencyPredictorConfig = z.output<typeof EppLatencyPredictorSchema>;

export interface LatencyWiring {
  /** The scheduler configuration to build (with the predicted-latency plugins added when routing on predictions is asked for). */
  scheduler: Record<string, unknown>;
  predictor: LatencyPredictor | null;
  deps: LatencyPluginDeps | null;
}

/**
 * Decides what predicted-latency routing this EPP runs: with latency routing on and a scheduler
 * configuration without latency plugins, the latency plugins are added to it (kvix's default
 * profile becomes PREDICTED_LATENCY_PICKER_CONFIG); a predictor (the built-in model, or llm-d's
 * servers with it as fallback) is created whenever the configuration uses one.
 */
export async function wireLatency(
  config: { latencyPredictor: EppLatencyPredictorConfig; scheduler: Record<string, unknown> },
  registry: Registry,
  logger: Logger,
  /** Wraps the predictor the router uses (a routing worker shares what it learns with the others). */
  wrap: (predictor: LatencyPredictor) => LatencyPredictor = (p) => p,
): Promise<LatencyWiring> {
  const lp = config.latencyPredictor;
  const wanted = lp.enabled || lp.predictionUrls.length > 0 || lp.trainingUrl !== undefined;
  let scheduler = config.scheduler;
  if (wanted && !usesLatencyPredictor(scheduler) && Array.isArray(scheduler['plugins']) && Array.isArray(scheduler['schedulingProfiles'])) {
    // A malformed configuration is left as is: the scheduler's validation names its problem.
    scheduler = withPredictedLatency(scheduler as unknown as EndpointPickerConfigInput) as unknown as Record<string, unknown>;
    logger.info('predicted-latency routing: producer, SLO tier filter, latency scorer and SLO admitter added to the scheduler profile');
  }
  if (!usesLatencyPredictor(scheduler)) return { scheduler, predictor: null, deps: null };
  const predictor = wrap(await createLatencyPredictor(lp, { logger: logger.child({ component: 'latency-predictor' }), registry }));
  // One tracker the producer fills and active-active replicas exchange (Epp passes it to replication).
  return { scheduler, predictor, deps: { predictor: () => predictor, metrics: new LatencyRoutingMetrics(registry), inFlightTokens: new InFlightTokens() } };
}

/** GET /debug/latency-predictor: which model answers, whether it is ready, circuits and the last snapshot. */
export function registerLatencyDebug(app: FastifyInstance, predictor: LatencyPredictor | null): void {
  app.get('/debug/latency-predictor', async (_req, reply) =>
    predictor ? predictor.describe() : sendError(reply, 404, 'NO_LATENCY_PREDICTOR', 'no predicted-latency routing here (--latency-predictor builtin or a prediction server URL turns it on)'),
  );
}
