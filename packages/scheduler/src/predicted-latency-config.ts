import type { EndpointPickerConfigInput } from './config.js';
import { DEFAULT_PICKER_CONFIG } from './default-config.js';

type Profile = EndpointPickerConfigInput['schedulingProfiles'][number];
type Ref = Profile['plugins'][number];

const PICKERS = new Set(['max-score-picker', 'weighted-random-picker', 'random-picker', 'round-robin-picker']);

/**
 * Adds predicted-latency routing for requests carrying an SLO header (x-llm-d-slo-ttft-ms /
 * x-llm-d-slo-tpot-ms) to a scheduler configuration: the producer predicts every candidate's TTFT
 * and TPOT, the tier filter keeps the pods predicted to meet the SLO, the latency scorer (weight
 * 3) prefers the most headroom among them (the smallest deficit when none meets it), and
 * sheddable SLO requests no pod can serve in time are answered 429. Requests without an SLO
 * header are routed exactly as by the original profile (the producer skips them; the scorer
 * scores them alike), but still train the model. Every profile gets the plugins.
 */
export function withPredictedLatency(config: EndpointPickerConfigInput): EndpointPickerConfigInput {
  const pickerNames = new Set(config.plugins.filter((p) => PICKERS.has(p.type)).map((p) => p.name ?? p.type));
  const profiles = config.schedulingProfiles.map((profile): Profile => {
    const at = profile.plugins.findIndex((r) => pickerNames.has(r.pluginRef));
    const rest = profile.plugins.slice();
    const scorer: Ref = { pluginRef: 'latency-scorer', weight: 3 };
    if (at >= 0) rest.splice(at, 0, scorer);
    else rest.push(scorer);
    return { ...profile, plugins: [{ pluginRef: 'predicted-latency-producer' }, { pluginRef: 'slo-headroom-tier-filter' }, ...rest] };
  });
  return {
    ...config,
    plugins: [
      ...config.plugins,
      { type: 'predicted-latency-producer' },
      { type: 'slo-headroom-tier-filter' },
      { type: 'latency-scorer', parameters: { headroomSelectionStrategy: 'most', whenNoneMeetsSlo: 'defer' } },
      { type: 'latency-slo-admitter' },
    ],
    schedulingProfiles: profiles,
  };
}

/** kvix's default profile with predicted-latency routing (what `--latency-predictor` runs unless the scheduler is configured). */
export const PREDICTED_LATENCY_PICKER_CONFIG: EndpointPickerConfigInput = withPredictedLatency(DEFAULT_PICKER_CONFIG);

/** Plugin types that need a latency predictor. */
export const LATENCY_PLUGIN_TYPES: readonly string[] = ['predicted-latency-producer'];

/** Whether a scheduler configuration uses predicted latency (so a predictor must be created for it). */
export function usesLatencyPredictor(config: { plugins?: unknown }): boolean {
  return Array.isArray(config.plugins) && config.plugins.some((p) => typeof p === 'object' && p !== null && LATENCY_PLUGIN_TYPES.includes((p as { type?: unknown }).type as string));
}
