import { Counter, Gauge, type Histogram, type Registry } from 'prom-client';
import { FastHistogram } from '@kvix/telemetry';

const LATENCY = [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1, 1.5, 2, 3, 5, 10, 20, 60];
const DURATION = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25];
const LABELS = ['plugin_name', 'plugin_type', 'model_name', 'target_model_name'] as const;
type L = (typeof LABELS)[number];
type Legacy = 'model_name' | 'target_model_name';

/** The deprecated `inference_objective_*` twin's labels: the model pair, without the plugin. */
function legacy<T extends Partial<Record<string, string>>>(l: T): Partial<Record<Legacy | 'type', string>> {
  const out: Partial<Record<Legacy | 'type', string>> = {};
  for (const k of ['model_name', 'target_model_name', 'type'] as const) if (l[k] !== undefined) out[k] = l[k];
  return out;
}

/** A histogram written under llm-d's current name and its deprecated twin (llm-d dual-emits both). */
class TwinHistogram {
  constructor(
    readonly current: Histogram<L>,
    readonly legacy: Histogram<Legacy>,
  ) {}
  observe(labels: Partial<Record<L, string>>, value: number): void {
    this.current.observe(labels, value);
    this.legacy.observe(legacy(labels), value);
  }
}

/**
 * Predicted-latency routing metrics under llm-d's names (its predicted-latency producer's, with
 * the deprecated `inference_objective_*` twins it still writes), plus kvix's prediction outcomes
 * and live prediction error. `model_name` is the scheduled model (the scheduler sees no pre-alias
 * name).
 */
export class LatencyRoutingMetrics {
  readonly predictedTtft: TwinHistogram;
  readonly predictedTpot: TwinHistogram;
  /** kvix predicts TTFT and TPOT in one call: its duration is observed under both of llm-d's names. */
  readonly predictionDuration: { observe(labels: Partial<Record<L, string>>, seconds: number): void };
  readonly sloViolations: { inc(labels: Partial<Record<L | 'type', string>>): void };
  /** llm-d's `llm_d_epp_inference_request_metric`: the last observed TTFT / TPOT (seconds) per model, `type` ttft or tpot. */
  readonly observed: { set(labels: Partial<Record<L | 'type', string>>, seconds: number): void };
  readonly outcomes: Counter<'outcome' | 'source'>;
  readonly ttftErrorRatio: Histogram;
  readonly trainingEntries: Counter<'kind'>;

  constructor(registry: Registry) {
    const registers = [registry];
    const dep = (current: string, help: string): string => `[Deprecated: use ${current}] ${help}`;
    const twin = (current: string, old: string, help: string, buckets: number[]): TwinHistogram =>
      new TwinHistogram(new FastHistogram({ name: current, help, labelNames: LABELS, buckets, registers }), new FastHistogram({ name: old, help: dep(current, help), labelNames: ['model_name', 'target_model_name'] as const, buckets, registers }));
    this.predictedTtft = twin('llm_d_epp_request_predicted_ttft_seconds', 'inference_objective_request_predicted_ttft_seconds', 'Predicted TTFT of the chosen endpoint, per routed request with predictions.', LATENCY);
    this.predictedTpot = twin('llm_d_epp_request_predicted_tpot_seconds', 'inference_objective_request_predicted_tpot_seconds', 'Predicted TPOT of the chosen endpoint, per routed request with predictions.', LATENCY);
    const ttftDuration = twin('llm_d_epp_request_ttft_prediction_duration_seconds', 'inference_objective_request_ttft_prediction_duration_seconds', 'Getting one request\'s bulk prediction over its candidates.', DURATION);
    const tpotDuration = twin('llm_d_epp_request_tpot_prediction_duration_seconds', 'inference_objective_request_tpot_prediction_duration_seconds', 'Getting one request\'s bulk prediction over its candidates (TPOT is predicted in the same call as TTFT).', DURATION);
    this.predictionDuration = {
      observe: (labels, seconds) => {
        ttftDuration.observe(labels, seconds);
        tpotDuration.observe(labels, seconds);
      },
    };
    const violations = new Counter({ name: 'llm_d_epp_request_slo_violation_total', help: 'Completed requests that missed their SLO, per SLO type (ttft, tpot).', labelNames: [...LABELS, 'type'] as const, registers });
    const oldViolations = new Counter({ name: 'inference_objective_request_slo_violation_total', help: dep('llm_d_epp_request_slo_violation_total', 'Completed requests that missed their SLO.'), labelNames: ['model_name', 'target_model_name', 'type'] as const, registers });
    this.sloViolations = {
      inc: (labels) => {
        violations.inc(labels);
        oldViolations.inc(legacy(labels));
      },
    };
    // A latency, not a count: across an EPP's processes (`--routing-workers`) the mean of their last observations.
    const observed = new Gauge({ name: 'llm_d_epp_inference_request_metric', help: 'Last observed latency of a routed request (seconds), by type (ttft, tpot).', labelNames: [...LABELS, 'type'] as const, registers, aggregator: 'average' });
    const oldObserved = new Gauge({ name: 'inference_objective_inference_request_metric', help: dep('llm_d_epp_inference_request_metric', 'Last observed request latency.'), labelNames: ['model_name', 'target_model_name', 'type'] as const, registers, aggregator: 'average' });
    this.observed = {
      set: (labels, seconds) => {
        observed.set(labels, seconds);
        oldObserved.set(legacy(labels), seconds);
      },
    };
    this.outcomes = new Counter({ name: 'kvix_epp_latency_predictions_total', help: 'Routing decisions by prediction outcome (predicted, skipped: no SLO header, unavailable: predictor not ready or down) and source (remote, builtin, none).', labelNames: ['outcome', 'source'], registers });
    this.ttftErrorRatio = new FastHistogram({ name: 'kvix_epp_latency_ttft_prediction_error_ratio', help: '|predicted − observed| / observed TTFT of routed requests that had a prediction (mean of it = MAPE).', buckets: [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5], registers });
    this.trainingEntries = new Counter({ name: 'kvix_epp_latency_training_entries_total', help: 'Training entries produced from completed requests, by kind (ttft, tpot).', labelNames: ['kind'], registers });
  }
}
