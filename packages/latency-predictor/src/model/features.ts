import type { PredictionRow } from '../wire.js';

/**
 * What the built-in model regresses on. Names follow llm-d's feature names (its training server
 * derives `effective_input_tokens` and `is_queued` the same way). Values are scaled to O(1) so
 * the prior treats every weight alike: tokens in thousands, request counts in tens.
 */
export interface FeatureMap {
  readonly names: readonly string[];
  /** Feature value = raw × scale (so a weight per raw unit is weight × scale). */
  readonly scales: readonly number[];
  fill(row: PredictionRow, out: Float64Array): Float64Array;
}

/**
 * TTFT on a vLLM engine is queueing plus prefill: the uncached prompt (input × (1 − prefix
 * score)) and the prefill work already dispatched to the pod ahead of it dominate; the running
 * batch stretches every step; a queue means admission waits.
 */
export const TTFT_FEATURES: FeatureMap = {
  names: ['intercept', 'effective_input_tokens', 'input_token_length', 'prefill_tokens_in_flight', 'decode_tokens_in_flight', 'num_request_waiting', 'num_request_running', 'kv_cache_percentage', 'is_queued'],
  scales: [1, 1e-3, 1e-3, 1e-3, 1e-4, 1, 0.1, 1, 1],
  fill(row, out) {
    out[0] = 1;
    out[1] = row.input_token_length * (1 - row.prefix_cache_score) * 1e-3;
    out[2] = row.input_token_length * 1e-3;
    out[3] = row.prefill_tokens_in_flight * 1e-3;
    out[4] = row.decode_tokens_in_flight * 1e-4;
    out[5] = row.num_request_waiting;
    out[6] = row.num_request_running * 0.1;
    out[7] = row.kv_cache_percentage;
    out[8] = row.num_request_waiting > 0 ? 1 : 0;
    return out;
  },
};

/** TPOT is the decode step: it grows with the batch, the context it attends over, and prefills interleaved with it. */
export const TPOT_FEATURES: FeatureMap = {
  names: ['intercept', 'num_request_running', 'decode_tokens_in_flight', 'prefill_tokens_in_flight', 'num_request_waiting', 'kv_cache_percentage', 'input_token_length', 'num_tokens_generated'],
  scales: [1, 0.1, 1e-4, 1e-3, 1, 1, 1e-3, 1e-2],
  fill(row, out) {
    out[0] = 1;
    out[1] = row.num_request_running * 0.1;
    out[2] = row.decode_tokens_in_flight * 1e-4;
    out[3] = row.prefill_tokens_in_flight * 1e-3;
    out[4] = row.num_request_waiting;
    out[5] = row.kv_cache_percentage;
    out[6] = row.input_token_length * 1e-3;
    out[7] = row.num_tokens_generated * 1e-2;
    return out;
  },
};
