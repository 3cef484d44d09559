/**
 * The JSON of llm-d's latency predictor servers (llm-d-latency-predictor), field for field: a
 * prediction row per (request, candidate pod), training entries with the observed latencies, and
 * the answers. Names stay snake_case because they are the wire format.
 */

/** Features of one request on one candidate pod. */
export interface PredictionRow {
  /** KV-cache utilisation of the pod, 0..1. */
  kv_cache_percentage: number;
  input_token_length: number;
  num_request_waiting: number;
  num_request_running: number;
  num_tokens_generated: number;
  /** Share of the prompt's blocks the pod already holds, 0..1. */
  prefix_cache_score: number;
  /** '' (monolithic), 'prefill' or 'decode'. */
  pod_type: string;
  /** Uncached prompt tokens dispatched to the pod whose first token has not come back yet. */
  prefill_tokens_in_flight: number;
  decode_tokens_in_flight: number;
  /** Multimodal encoder-cache features (0 for text-only requests). */
  encoder_input_size: number;
  encoder_matched_size: number;
}

export interface TrainingEntry extends PredictionRow {
  /** Observed TTFT in ms; 0 for an entry carrying only a TPOT observation. */
  actual_ttft_ms: number;
  /** Observed mean time per output token after the first, ms; 0 for a TTFT-only entry. */
  actual_tpot_ms: number;
  /** When it was observed (ISO 8601). */
  timestamp?: string;
}

/** Rows per bulk call the servers accept. */
export const MAX_BULK_ROWS = 10_000;

/** One reason a body was refused, in FastAPI's 422 shape. */
export interface ValidationIssue {
  loc: (string | number)[];
  msg: string;
  type: string;
}

type Parsed<T> = { ok: true; value: T } | { ok: false; issues: ValidationIssue[] };

/**
 * Plausible ceilings, beyond which a value is refused (422) rather than learnt: llm-d's servers
 * accept any finite number ≥ 0, and 50 training rows with a TTFT of 1e300 ms moved a predicted
 * p90 from 78 to 622 ms. A prompt or in-flight sum of a billion tokens, or a first token after
 * an hour, is a broken or hostile client, not a fleet.
 */
export const PLAUSIBLE_MAX: Readonly<Record<string, number>> = {
  input_token_length: 10_000_000,
  num_tokens_generated: 10_000_000,
  num_request_waiting: 1_000_000,
  num_request_running: 1_000_000,
  prefill_tokens_in_flight: 1_000_000_000,
  decode_tokens_in_flight: 1_000_000_000,
  encoder_input_size: 1_000_000_000,
  encoder_matched_size: 1_000_000_000,
  actual_ttft_ms: 3_600_000,
  actual_tpot_ms: 60_000,
};

function tooLarge(loc: (string | number)[], key: string): ValidationIssue {
  return { loc: [...loc, key], msg: `Input should be less than or equal to ${PLAUSIBLE_MAX[key]}`, type: 'less_than_equal' };
}

const REQUIRED_ROW = ['kv_cache_percentage', 'input_token_length', 'num_request_waiting', 'num_request_running', 'num_tokens_generated', 'prefix_cache_score'] as const;
const COUNTS = ['input_token_length', 'num_request_waiting', 'num_request_running', 'num_tokens_generated', 'prefill_tokens_in_flight', 'decode_tokens_in_flight', 'encoder_input_size', 'encoder_matched_size'] as const;
const FRACTIONS = ['kv_cache_percentage', 'prefix_cache_score'] as const;

/**
 * Validates a prediction row as llm-d's servers do (pydantic: required features, counts ≥ 0 and
 * integral, fractions in [0, 1], in-flight and encoder features default 0). Hand-written rather
 * than a schema library: it runs for every row of every routing decision.
 */
export function parsePredictionRow(raw: unknown, loc: (string | number)[] = ['body']): Parsed<PredictionRow> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { ok: false, issues: [{ loc, msg: 'Input should be a valid dictionary', type: 'dict_type' }] };
  const o = raw as Record<string, unknown>;
  const issues: ValidationIssue[] = [];
  for (const k of REQUIRED_ROW) if (o[k] === undefined) issues.push({ loc: [...loc, k], msg: 'Field required', type: 'missing' });
  for (const k of COUNTS) {
    const v = o[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isInteger(v)) issues.push({ loc: [...loc, k], msg: 'Input should be a valid integer', type: 'int_type' });
    else if (v < 0) issues.push({ loc: [...loc, k], msg: 'Input should be greater than or equal to 0', type: 'greater_than_equal' });
    else if (v > PLAUSIBLE_MAX[k]!) issues.push(tooLarge(loc, k));
  }
  for (const k of FRACTIONS) {
    const v = o[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v)) issues.push({ loc: [...loc, k], msg: 'Input should be a valid number', type: 'float_type' });
    else if (v < 0 || v > 1) issues.push({ loc: [...loc, k], msg: v < 0 ? 'Input should be greater than or equal to 0' : 'Input should be less than or equal to 1', type: v < 0 ? 'greater_than_equal' : 'less_than_equal' });
  }
  const podType = o['pod_type'];
  if (podType !== undefined && podType !== null && typeof podType !== 'string') issues.push({ loc: [...loc, 'pod_type'], msg: 'Input should be a valid string', type: 'string_type' });
  if (issues.length > 0) return { ok: false, issues };
  const n = (k: string): number => (o[k] as number | undefined) ?? 0;
  return {
    ok: true,
    value: {
      kv_cache_percentage: n('kv_cache_percentage'),
      input_token_length: n('input_token_length'),
      num_request_waiting: n('num_request_waiting'),
      num_request_running: n('num_request_running'),
      num_tokens_generated: n('num_tokens_generated'),
      prefix_cache_score: n('prefix_cache_score'),
      pod_type: (podType as string | null | undefined) ?? '',
      prefill_tokens_in_flight: n('prefill_tokens_in_flight'),
      decode_tokens_in_flight: n('decode_tokens_in_flight'),
      encoder_input_size: n('encoder_input_size'),
      encoder_matched_size: n('encoder_matched_size'),
    },
  };
}

export function parseTrainingEntry(raw: unknown, loc: (string | number)[] = ['body']): Parsed<TrainingEntry> {
  const row = parsePredictionRow(raw, loc);
  const o = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
  const issues = row.ok ? [] : [...row.issues];
  for (const k of ['actual_ttft_ms', 'actual_tpot_ms'] as const) {
    const v = o[k];
    if (v === undefined) issues.push({ loc: [...loc, k], msg: 'Field required', type: 'missing' });
    else if (typeof v !== 'number' || !Number.isFinite(v)) issues.push({ loc: [...loc, k], msg: 'Input should be a valid number', type: 'float_type' });
    else if (v < 0) issues.push({ loc: [...loc, k], msg: 'Input should be greater than or equal to 0', type: 'greater_than_equal' });
    else if (v > PLAUSIBLE_MAX[k]!) issues.push(tooLarge(loc, k));
  }
  const ts = o['timestamp'];
  if (ts !== undefined && (typeof ts !== 'string' || Number.isNaN(Date.parse(ts)))) issues.push({ loc: [...loc, 'timestamp'], msg: 'Input should be a valid datetime', type: 'datetime_type' });
  if (!row.ok || issues.length > 0) return { ok: false, issues };
  return { ok: true, value: { ...row.value, actual_ttft_ms: o['actual_ttft_ms'] as number, actual_tpot_ms: o['actual_tpot_ms'] as number, ...(typeof ts === 'string' ? { timestamp: ts } : {}) } };
}

export interface PredictionResponse {
  ttft_ms: number;
  tpot_ms: number;
  /** ISO 8601. */
  predicted_at: string;
  model_type: string;
  objective_type: string;
  quantile: number;
  last_model_load: string | null;
}

export interface BulkPredictionResponse {
  predictions: PredictionResponse[];
  total_requests: number;
  successful_predictions: number;
  failed_predictions: number;
  processing_time_ms: number;
}

export interface BulkPredictionError {
  index: number;
  error: string;
  request: unknown;
}

/** /predict/bulk: a row that failed is null in `predictions` and listed in `errors`. */
export interface BulkPredictionResponseWithErrors extends Omit<BulkPredictionResponse, 'predictions'> {
  predictions: (PredictionResponse | null)[];
  errors: BulkPredictionError[];
}

export interface StatusResponse {
  is_ready: boolean;
  model_type: string;
  objective_type: string;
  quantile: number;
  last_model_load: string | null;
  training_server_url: string;
  models_exist: Record<string, boolean>;
}

/** The training server's /model/download/info (the fields kvix reads). */
export interface ModelInfoResponse {
  model_type: string;
  quantile: number;
  objective_type?: string;
  model_status?: Record<string, boolean>;
}

/** How the servers answer the validation errors FastAPI raises (422). */
export interface ValidationErrorResponse {
  detail: ValidationIssue[];
}

/** Model types llm-d's servers report; the built-in model reports its own. */
export const LLM_D_MODEL_TYPES = ['xgboost', 'lightgbm', 'bayesian_ridge'] as const;
export const BUILTIN_MODEL_TYPE = 'kvix_online_bayesian_linear';
