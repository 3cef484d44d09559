import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

const LATENCY = [0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600];
const SCHEDULER = [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1];

/**
 * The router's metrics under the names llm-d and the Gateway API Inference Extension dashboards
 * query (`llm_d_epp_*`, `inference_pool_*`), plus kvix's own decision counters.
 */
export class RouterMetrics {
  readonly requests: Counter<'model_name' | 'target_model_name'>;
  readonly errors: Counter<'model_name' | 'target_model_name' | 'error_code'>;
  readonly duration: Histogram<'model_name' | 'target_model_name'>;
  readonly ttft: Histogram<'model_name' | 'target_model_name'>;
  readonly inputTokens: Histogram<'model_name' | 'target_model_name'>;
  readonly outputTokens: Histogram<'model_name' | 'target_model_name'>;
  readonly running: Gauge<'model_name'>;
  readonly schedulerE2e: Histogram;
  readonly pluginDuration: Histogram<'extension_point' | 'plugin_type' | 'plugin_name'>;
  readonly poolReadyPods: Gauge<'name'>;
  readonly poolKvUtilization: Gauge<'name'>;
  readonly poolQueue: Gauge<'name'>;
  readonly poolRunning: Gauge<'name'>;
  readonly perPodQueue: Gauge<'name' | 'model_server_pod'>;
  readonly decisions: Counter<'endpoint'>;
  readonly fallbacksUsed: Counter;
  readonly prefixErrors: Counter<'code'>;
  readonly modelRewrites: Counter<'model_rewrite_name' | 'model_name' | 'target_model'>;

  constructor(registry: Registry) {
    const registers = [registry];
    const model = ['model_name', 'target_model_name'] as const;
    this.requests = new Counter({ name: 'llm_d_epp_request_total', help: 'Requests routed, per client model and target model.', labelNames: model, registers });
    this.errors = new Counter({ name: 'llm_d_epp_request_error_total', help: 'Requests that failed, per model and error code.', labelNames: [...model, 'error_code'], registers });
    this.duration = new Histogram({ name: 'llm_d_epp_request_duration_seconds', help: 'From the request entering the router to its response ending.', labelNames: model, buckets: LATENCY, registers });
    this.ttft = new Histogram({ name: 'llm_d_epp_request_ttft_seconds', help: 'From the request entering the router to the first response body bytes.', labelNames: model, buckets: LATENCY, registers });
    this.inputTokens = new Histogram({ name: 'llm_d_epp_input_tokens', help: 'Prompt tokens per request (from the response usage).', labelNames: model, buckets: [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072], registers });
    this.outputTokens = new Histogram({ name: 'llm_d_epp_output_tokens', help: 'Completion tokens per request (from the response usage).', labelNames: model, buckets: [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192], registers });
    this.running = new Gauge({ name: 'llm_d_epp_running_requests', help: 'Requests in flight through the router, per model.', labelNames: ['model_name'], registers });
    this.schedulerE2e = new Histogram({ name: 'llm_d_epp_scheduler_e2e_duration_seconds', help: 'Scheduling one request: filters, scorers and picker.', buckets: SCHEDULER, registers });
    this.pluginDuration = new Histogram({ name: 'llm_d_epp_plugin_duration_seconds', help: 'Time in each plugin, per extension point.', labelNames: ['extension_point', 'plugin_type', 'plugin_name'], buckets: SCHEDULER, registers });
    this.poolReadyPods = new Gauge({ name: 'inference_pool_ready_pods', help: 'Endpoints in the candidate set (healthy, not draining).', labelNames: ['name'], registers });
    this.poolKvUtilization = new Gauge({ name: 'inference_pool_average_kv_cache_utilization', help: 'Mean KV-cache utilisation of the ready endpoints.', labelNames: ['name'], registers });
    this.poolQueue = new Gauge({ name: 'inference_pool_average_queue_size', help: 'Mean waiting requests of the ready endpoints.', labelNames: ['name'], registers });
    this.poolRunning = new Gauge({ name: 'inference_pool_average_running_requests', help: 'Mean running requests of the ready endpoints.', labelNames: ['name'], registers });
    this.perPodQueue = new Gauge({ name: 'inference_pool_per_pod_queue_size', help: 'Waiting requests per endpoint.', labelNames: ['name', 'model_server_pod'], registers });
    this.decisions = new Counter({ name: 'kvix_epp_decisions_total', help: 'Requests sent to each endpoint (first choice).', labelNames: ['endpoint'], registers });
    this.fallbacksUsed = new Counter({ name: 'kvix_epp_fallbacks_used_total', help: 'Requests served by a fallback endpoint because the choice was unreachable.', registers });
    // GAIE's name and labels (its EPP counts the same decisions), so rewrite dashboards carry over.
    this.modelRewrites = new Counter({ name: 'inference_extension_model_rewrite_decisions_total', help: 'Model rewrite decisions: which rule (InferenceModelRewrite namespace/name, or scheduler-config) sent a client model to which target.', labelNames: ['model_rewrite_name', 'model_name', 'target_model'], registers });
    this.prefixErrors = new Counter({ name: 'kvix_epp_prefix_scorer_errors_total', help: 'Requests scored without precise prefix data, by error code.', labelNames: ['code'], registers });
  }
}
