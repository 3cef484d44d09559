import type { InFlightTokens } from './inflight-tokens.js';
import type { LatencyPredictor } from '@kvix/latency-predictor';
import type { Logger } from 'pino';
import { z } from 'zod';
import { SchedulerError } from '../../errors.js';
import type { Plugin } from '../../types.js';
import { LatencyScorer } from './latency-scorer.js';
import { LatencySloAdmitter } from './latency-slo-admitter.js';
import type { LatencyRoutingMetrics } from './metrics.js';
import { PredictedLatencyProducer } from './predicted-latency-producer.js';
import { SloHeadroomTierFilter } from './slo-headroom-tier-filter.js';

/** What the latency plugins need from whoever embeds the router. */
export interface LatencyPluginDeps {
  /** The predictor (created on first use: configurations without latency plugins never pay for one). */
  predictor: () => LatencyPredictor;
  metrics: LatencyRoutingMetrics | null;
  /** For the tier filter's exploration; Math.random by default. */
  random?: () => number;
  /** The tokens in flight per pod the producer counts (shared with peer replicas by the service). */
  inFlightTokens?: InFlightTokens;
}

type Parse = <T extends z.ZodType>(plugin: string, schema: T, raw: unknown) => z.output<T>;
type Factory = (name: string, params: unknown, deps: { logger: Logger; latency?: LatencyPluginDeps | null }) => Plugin;

/** llm-d's Go duration strings ("5m", "30s", "1h30m") or ms. */
const duration = z.union([
  z.number().int().positive(),
  z.string().regex(/^(\d+(\.\d+)?(ms|s|m|h))+$/, 'expected a duration like 5m or 30s').transform((s) => {
    let ms = 0;
    for (const [, n, unit] of s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) ms += Number(n) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit as 'ms' | 's' | 'm' | 'h'];
    return ms;
  }),
]);

const ProducerParams = z
  .object({
    predictWithoutSlo: z.boolean().default(false),
    sloBufferFactor: z.number().positive().default(1),
    streamingMode: z.boolean().optional(),
    endpointRoleLabel: z.string().default(''),
    predictInProduce: z.boolean().default(true),
    contextTTL: duration.default(300_000),
    // Accepted from llm-d configurations; they select producers that kvix does not split out.
    samplingMean: z.number().optional(),
    maxDecodeTokenSamplesForPrediction: z.number().optional(),
    prefixMatchInfoProducerName: z.string().optional(),
    inFlightLoadProducerName: z.string().optional(),
    useEncoderCacheFeatures: z.boolean().optional(),
    encoderCacheMatchInfoProducerName: z.string().optional(),
  })
  .strict();

const ScorerParams = z
  .object({
    ttftWeight: z.number().min(0).default(0.8),
    tpotWeight: z.number().min(0).default(0.2),
    headroomSelectionStrategy: z.enum(['least', 'most']).default('least'),
    compositeKVWeight: z.number().min(0).default(1),
    compositeQueueWeight: z.number().min(0).default(1),
    compositePrefixWeight: z.number().min(0).default(1),
    whenNoneMeetsSlo: z.enum(['least-deficit', 'defer']).default('least-deficit'),
    latencyPredictionInfoProducerName: z.string().optional(),
    prefixMatchInfoProducerName: z.string().optional(),
  })
  .strict();

function needPredictor(name: string, deps: { latency?: LatencyPluginDeps | null }): LatencyPluginDeps {
  if (!deps.latency) throw new SchedulerError('NO_LATENCY_PREDICTOR', `plugin ${name}: no latency predictor here; configure latencyPredictor (built-in or prediction server URLs)`);
  return deps.latency;
}

/** The predicted-latency plugins, under llm-d's type names. */
export function latencyFactories(parse: Parse): Record<string, Factory> {
  return {
    'predicted-latency-producer': (name, raw, deps) => {
      const p = parse(name, ProducerParams, raw);
      const latency = needPredictor(name, deps);
      return new PredictedLatencyProducer(
        name,
        latency.predictor(),
        { predictWithoutSlo: p.predictWithoutSlo, sloBufferFactor: p.sloBufferFactor, streamingMode: p.streamingMode, endpointRoleLabel: p.endpointRoleLabel, predictInProduce: p.predictInProduce, contextTtlMs: p.contextTTL },
        { logger: deps.logger.child({ plugin: name }), metrics: latency.metrics, ...(latency.inFlightTokens ? { inFlightTokens: latency.inFlightTokens } : {}) },
      );
    },
    'latency-scorer': (name, raw) => new LatencyScorer(name, parse(name, ScorerParams, raw)),
    'slo-headroom-tier-filter': (name, raw, deps) => {
      const p = parse(name, z.object({ epsilonExploreNeg: z.number().min(0).max(1).default(0.01) }).strict(), raw);
      return new SloHeadroomTierFilter(name, p.epsilonExploreNeg, deps.latency?.random ?? Math.random);
    },
    'latency-slo-admitter': (name, raw) => (parse(name, z.object({ latencyPredictionInfoProducerName: z.string().optional() }).strict(), raw), new LatencySloAdmitter(name)),
  };
}

/** Plugin types that act when declared, referenced by a profile or not (llm-d declares its admitter only under plugins). */
export const DECLARED_ONLY_TYPES: ReadonlySet<string> = new Set(['latency-slo-admitter', 'predicted-latency-producer']);
