import { Counter, Histogram, type Registry } from 'prom-client';

const LATENCY = [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1, 1.5, 2, 3, 5, 10, 20, 60];
const DURATION = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25];
const LABELS = ['plugin_name', 'plugin_type', 'model_name', 'target_model_name'] as const;

/**
 * Predicted-latency routing metrics under llm-d's names (its predicted-latency producer's), plus
 * kvix's prediction outcomes and live prediction error. `model_name` is the scheduled model (the
 * scheduler sees no pre-alias name).
 */
export class LatencyRoutingMetrics {
  readonly predictedTtft: Histogram<(typeof LABELS)[number]>;
  readonly predictedTpot: Histogram<(typeof LABELS)[number]>;
  readonly predictionDuration: Histogram<(typeof LABELS)[number]>;
  readonly sloViolations: Counter<(typeof LABELS)[number] | 'type'>;
  readonly outcomes: Counter<'outcome' | 'source'>;
  readonly ttftErrorRatio: Histogram;
  readonly trainingEntries: Counter<'kind'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.predictedTtft = new Histogram({ name: 'llm_d_epp_request_predicted_ttft_seconds', help: 'Predicted TTFT of the chosen endpoint, per routed request with predictions.', labelNames: LABELS, buckets: LATENCY, registers });
    this.predictedTpot = new Histogram({ name: 'llm_d_epp_request_predicted_tpot_seconds', help: 'Predicted TPOT of the chosen endpoint, per routed request with predictions.', labelNames: LABELS, buckets: LATENCY, registers });
    this.predictionDuration = new Histogram({ name: 'llm_d_epp_request_ttft_prediction_duration_seconds', help: 'Getting one request\'s bulk prediction over its candidates.', labelNames: LABELS, buckets: DURATION, registers });
    this.sloViolations = new Counter({ name: 'llm_d_epp_request_slo_violation_total', help: 'Completed requests that missed their SLO, per SLO type (ttft, tpot).', labelNames: [...LABELS, 'type'], registers });
    this.outcomes = new Counter({ name: 'kvix_epp_latency_predictions_total', help: 'Routing decisions by prediction outcome (predicted, skipped: no SLO header, unavailable: predictor not ready or down) and source (remote, builtin, none).', labelNames: ['outcome', 'source'], registers });
    this.ttftErrorRatio = new Histogram({ name: 'kvix_epp_latency_ttft_prediction_error_ratio', help: '|predicted − observed| / observed TTFT of routed requests that had a prediction (mean of it = MAPE).', buckets: [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5], registers });
    this.trainingEntries = new Counter({ name: 'kvix_epp_latency_training_entries_total', help: 'Training entries produced from completed requests, by kind (ttft, tpot).', labelNames: ['kind'], registers });
  }
}
