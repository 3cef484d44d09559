import { z } from 'zod';
import { BuiltinModelConfigSchema } from './model/builtin-predictor.js';

const httpUrl = z.url({ protocol: /^https?$/ }).transform((u) => u.replace(/\/+$/, ''));

/**
 * Where predictions come from, in one object (the EPP's `latencyPredictor` section): no URLs =
 * the built-in model in this process; prediction URLs (llm-d's sidecars or kvix-latency-predictor)
 * = remote, with the built-in model taking over while they are unreachable.
 */
export const LatencyPredictorConfigSchema = z
  .object({
    /** Prediction servers (llm-d: PREDICTION_SERVER_URL, comma-separated); one is picked per call. */
    predictionUrls: z.array(httpUrl).default([]),
    /** Training server (llm-d: TRAINING_SERVER_URL); defaults to the first prediction URL (kvix-latency-predictor serves both). */
    trainingUrl: httpUrl.optional(),
    /** A file holding the bearer token the servers require (kvix-latency-predictor --http-auth-token-file). */
    authTokenFile: z.string().min(1).optional(),
    /** One HTTP attempt's budget. */
    timeoutMs: z.number().int().min(1).default(250),
    /** Further attempts after a failed one (on another prediction server when there is one). */
    retries: z.number().int().min(0).max(5).default(1),
    /** Concurrent routing decisions within this window share one bulk call (llm-d: 1 ms); 0 disables. */
    coalesceWindowMs: z.number().min(0).max(100).default(1),
    /** A coalesced call reaching this many rows is sent before its window ends. */
    maxBatchRows: z.number().int().min(1).max(10_000).default(100),
    maxConcurrentCalls: z.number().int().min(1).default(36),
    /** Training entries are sent this often (llm-d: every second). */
    flushIntervalMs: z.number().int().min(10).default(1000),
    /** Most entries per flush; beyond it a stratified sample (TTFT vs TPOT entries) is sent. */
    maxSampleSize: z.number().int().min(1).default(1000),
    /** How often the model snapshot (/status, /model/download/info, /metrics) is refreshed (llm-d: 60 s). */
    refreshIntervalMs: z.number().int().min(100).default(60_000),
    circuitBreaker: z
      .object({ failureThreshold: z.number().int().min(1).default(5), cooldownMs: z.number().int().min(10).default(5000) })
      .strict()
      .prefault({}),
    /** While the prediction servers fail, predict with the built-in model (trained on the same entries). */
    fallbackToBuiltin: z.boolean().default(true),
    builtin: BuiltinModelConfigSchema.prefault({}),
  })
  .strict();

export type LatencyPredictorConfig = z.output<typeof LatencyPredictorConfigSchema>;
export type LatencyPredictorConfigInput = z.input<typeof LatencyPredictorConfigSchema>;
