import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** The predictor client's own metrics (kvix's names: llm-d's Go client exports none). */
export class PredictorMetrics {
  readonly calls: Counter<'outcome'>;
  readonly callDuration: Histogram;
  readonly callersPerCall: Histogram;
  readonly circuitOpen: Gauge<'url'>;
  readonly fallbacks: Counter<'reason'>;
  readonly trainingEntries: Counter<'outcome'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.calls = new Counter({ name: 'kvix_latency_predictor_calls_total', help: 'Bulk prediction HTTP calls to prediction servers, by outcome (ok, timeout, unreachable, http_status, bad_response).', labelNames: ['outcome'], registers });
    this.callDuration = new Histogram({ name: 'kvix_latency_predictor_call_duration_seconds', help: 'One bulk prediction HTTP call, send to answer.', buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1], registers });
    this.callersPerCall = new Histogram({ name: 'kvix_latency_predictor_coalesced_callers', help: 'Routing decisions sharing one bulk prediction call (coalescing).', buckets: [1, 2, 4, 8, 16, 32, 64], registers });
    this.circuitOpen = new Gauge({ name: 'kvix_latency_predictor_circuit_open', help: '1 while the circuit to a prediction server is open (calls refused without trying).', labelNames: ['url'], registers });
    this.fallbacks = new Counter({ name: 'kvix_latency_predictor_fallbacks_total', help: 'Predictions answered by the built-in model because the prediction servers could not, by reason.', labelNames: ['reason'], registers });
    this.trainingEntries = new Counter({ name: 'kvix_latency_predictor_training_entries_total', help: 'Training entries, by outcome: sent (accepted with 202), dropped (buffer full or a failed flush past its retry), sampled_out (over maxSampleSize).', labelNames: ['outcome'], registers });
  }
}
