import type { EndpointPickerConfigInput } from './config.js';

/**
 * llm-d's reference profile for precise prefix routing: prefix 3, queue 2, KV-cache utilisation 2,
 * no-hit LRU 2, max-score picker. Prefix affinity alone hot-spots under load; the load scorers
 * are what spread a burst of same-prefix requests.
 */
export const DEFAULT_PICKER_CONFIG: EndpointPickerConfigInput = {
  apiVersion: 'llm-d.ai/v1alpha1',
  kind: 'EndpointPickerConfig',
  plugins: [
    { type: 'metrics-data-source' },
    { type: 'precise-prefix-cache-scorer' },
    { type: 'queue-scorer' },
    { type: 'kv-cache-utilization-scorer' },
    { type: 'no-hit-lru-scorer' },
    { type: 'max-score-picker' },
  ],
  schedulingProfiles: [
    {
      name: 'default',
      plugins: [
        { pluginRef: 'precise-prefix-cache-scorer', weight: 3 },
        { pluginRef: 'queue-scorer', weight: 2 },
        { pluginRef: 'kv-cache-utilization-scorer', weight: 2 },
        { pluginRef: 'no-hit-lru-scorer', weight: 2 },
        { pluginRef: 'max-score-picker' },
      ],
    },
  ],
};
