import { DEFAULT_PICKER_CONFIG, PREDICTED_LATENCY_PICKER_CONFIG, type EndpointPickerConfigInput } from '@kvix/scheduler';

export interface Arm {
  name: string;
  /** What it stands for, for the README and the JSON. */
  description: string;
  scheduler: EndpointPickerConfigInput;
  /**
   * Active-active EPP replicas the requests are spread over (default 1). Above 1 they follow one
   * index stream over NATS published by a kv-events process, and share speculation and load.
   */
  replicas?: number;
  /** Headers every request of this arm carries (the SLO arms: x-llm-d-slo-ttft-ms). */
  headers?: Record<string, string>;
  /** The EPP's latencyPredictor section (predicted-latency arms). */
  latencyPredictor?: Record<string, unknown>;
}

/** The TTFT SLO every request is measured against (simulated ms); the predicted-latency arm also sends it. */
export const SLO_TTFT_MS = 500;

type Ref = { pluginRef: string; weight?: number };

function profile(plugins: { type: string; parameters?: Record<string, unknown> }[], refs: Ref[]): EndpointPickerConfigInput {
  return {
    apiVersion: 'llm-d.ai/v1alpha1',
    kind: 'EndpointPickerConfig',
    plugins: plugins.map((p) => ({ type: p.type, ...(p.parameters ? { parameters: p.parameters } : {}) })),
    schedulingProfiles: [{ name: 'default', plugins: refs }],
  };
}

const LOAD: Ref[] = [
  { pluginRef: 'queue-scorer', weight: 2 },
  { pluginRef: 'kv-cache-utilization-scorer', weight: 2 },
];

/**
 * The configurations compared, each with llm-d's weights and every plugin at its defaults: the
 * benchmark tunes the workload, never the router.
 */
export const ARMS: Arm[] = [
  {
    name: 'round-robin',
    description: 'round-robin-picker: each pod in turn, blind to caches and load (a plain Kubernetes Service)',
    scheduler: profile([{ type: 'round-robin-picker' }], [{ pluginRef: 'round-robin-picker' }]),
  },
  {
    name: 'load-only',
    description: 'queue-scorer 2 + kv-cache-utilization-scorer 2, max-score-picker',
    scheduler: profile([{ type: 'queue-scorer' }, { type: 'kv-cache-utilization-scorer' }, { type: 'max-score-picker' }], [...LOAD, { pluginRef: 'max-score-picker' }]),
  },
  {
    name: 'approximate',
    description: 'prefix-cache-scorer 3 (router-side guess from past routing, no events) + queue 2 + kv 2, max-score-picker',
    scheduler: profile(
      [{ type: 'prefix-cache-scorer' }, { type: 'queue-scorer' }, { type: 'kv-cache-utilization-scorer' }, { type: 'max-score-picker' }],
      [{ pluginRef: 'prefix-cache-scorer', weight: 3 }, ...LOAD, { pluginRef: 'max-score-picker' }],
    ),
  },
  {
    name: 'precise-no-spec',
    description: 'precise-prefix-cache-scorer 3 (KV events, speculative entries off) + queue 2 + kv 2 + no-hit-lru 2, max-score-picker',
    scheduler: profile(
      [{ type: 'precise-prefix-cache-scorer', parameters: { speculative: false } }, { type: 'queue-scorer' }, { type: 'kv-cache-utilization-scorer' }, { type: 'no-hit-lru-scorer' }, { type: 'max-score-picker' }],
      [{ pluginRef: 'precise-prefix-cache-scorer', weight: 3 }, ...LOAD, { pluginRef: 'no-hit-lru-scorer', weight: 2 }, { pluginRef: 'max-score-picker' }],
    ),
  },
  {
    name: 'precise',
    description: "kvix's default profile (DEFAULT_PICKER_CONFIG): precise prefix 3 with speculative entries + queue 2 + kv 2 + no-hit-lru 2, max-score-picker",
    scheduler: DEFAULT_PICKER_CONFIG,
  },
  {
    name: 'precise-3-replicas',
    description: 'the precise profile on 3 active-active EPP replicas (index stream, speculation and in-flight load over NATS), requests spread round robin over them',
    scheduler: DEFAULT_PICKER_CONFIG,
    replicas: 3,
  },
  {
    name: 'predicted-latency',
    description: `kvix's default profile plus predicted-latency routing (PREDICTED_LATENCY_PICKER_CONFIG, built-in model learning online): every request carries x-llm-d-slo-ttft-ms: ${SLO_TTFT_MS}`,
    scheduler: PREDICTED_LATENCY_PICKER_CONFIG,
    headers: { 'x-llm-d-slo-ttft-ms': String(SLO_TTFT_MS) },
    latencyPredictor: { enabled: true },
  },
];
