import { Counter, Gauge, type Histogram, type Registry } from 'prom-client';
import { FastHistogram } from '@kvix/telemetry';

const LATENCY = [0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600];
const SCHEDULER = [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1];
const PER_TOKEN = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2, 5];
const SIZES = [64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864];
const TOKENS = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072];
const PROCESSING = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
const STREAM = [0.1, 1, 10, 60, 300, 1800, 3600, 21600, 86400];

/** Distinct client-given model names kept as label values before the rest fold to "other" (llm-d's cap). */
export const MODEL_LABEL_LIMIT = 1000;
/** Distinct fairness ids kept as label values (llm-d's default cap). */
export const FAIRNESS_LABEL_LIMIT = 1000;
/** llm-d's fairness id when a request names none. */
export const DEFAULT_FAIRNESS_ID = 'default-flow';

/** The labels llm-d's request series carry (`llm_d_epp_request_*`). */
export interface RequestLabels {
  model_name: string;
  target_model_name: string;
  fairness_id: string;
  priority: string;
}

type Req = keyof RequestLabels;
type LegacyReq = 'model_name' | 'target_model_name';

const REQUEST_LABELS: Req[] = ['model_name', 'target_model_name', 'fairness_id', 'priority'];

/**
 * A current llm-d series and the deprecated twin older dashboards query, written together as
 * llm-d dual-emits them (llm-d-router docs/metrics.md, "Deprecated series"). The twin's labels are
 * derived from the current ones, so no caller can write one without the other.
 */
class DualCounter<C extends string, L extends string> {
  constructor(
    readonly current: Counter<C>,
    readonly legacy: Counter<L>,
    private readonly legacyLabels: (l: Partial<Record<C, string>>) => Partial<Record<L, string>>,
  ) {}
  inc(labels: Partial<Record<C, string>>, n = 1): void {
    this.current.inc(labels, n);
    this.legacy.inc(this.legacyLabels(labels), n);
  }
}

class DualHistogram<C extends string, L extends string> {
  constructor(
    readonly current: Histogram<C>,
    readonly legacy: Histogram<L>,
    private readonly legacyLabels: (l: Partial<Record<C, string>>) => Partial<Record<L, string>>,
  ) {}
  observe(labels: Partial<Record<C, string>>, value: number): void {
    this.current.observe(labels, value);
    this.legacy.observe(this.legacyLabels(labels), value);
  }
}

class DualGauge<C extends string, L extends string> {
  constructor(
    readonly current: Gauge<C>,
    readonly legacy: Gauge<L>,
    private readonly legacyLabels: (l: Partial<Record<C, string>>) => Partial<Record<L, string>>,
  ) {}
  set(labels: Partial<Record<C, string>>, value: number): void {
    this.current.set(labels, value);
    this.legacy.set(this.legacyLabels(labels), value);
  }
  inc(labels: Partial<Record<C, string>>): void {
    this.current.inc(labels);
    this.legacy.inc(this.legacyLabels(labels));
  }
  dec(labels: Partial<Record<C, string>>): void {
    this.current.dec(labels);
    this.legacy.dec(this.legacyLabels(labels));
  }
  reset(): void {
    this.current.reset();
    this.legacy.reset();
  }
}

/** The help text of a deprecated twin series (GAIE's and older llm-d names), pointing at its current name. */
function deprecated(current: string, help: string): string {
  return `[Deprecated: use ${current}] ${help}`;
}

/** Label mapping of a twin series whose labels are the current one's. */
function same<K extends string>(l: Partial<Record<K, string>>): Partial<Record<K, string>> {
  return l;
}

function pick<K extends string>(keys: readonly K[]): <C extends string>(l: Partial<Record<C, string>>) => Partial<Record<K, string>> {
  return (l) => {
    const out: Partial<Record<K, string>> = {};
    for (const k of keys) {
      const v = (l as Record<string, string | undefined>)[k];
      if (v !== undefined) out[k] = v;
    }
    return out;
  };
}

/** Keeps the first `limit` distinct values of a client-controlled label; later ones read `other`. */
class BoundedLabel {
  private readonly seen = new Set<string>();
  private readonly pinned = new Set<string>();
  constructor(private readonly limit: number) {}
  /** Values that are never folded (configured model names). */
  pin(value: string): void {
    this.pinned.add(value);
  }
  of(value: string): string {
    if (this.pinned.has(value) || this.seen.has(value)) return value;
    if (this.seen.size >= this.limit) return 'other';
    this.seen.add(value);
    return value;
  }
}

/**
 * The router's metrics under the names llm-d's EPP exports (llm-d-router docs/metrics.md:
 * `llm_d_epp_*`), each deprecated name it still dual-emits beside its current twin
 * (`inference_objective_*`, `inference_pool_*`, `inference_extension_*`,
 * `llm_d_inference_scheduler_*`), plus kvix's own decision counters (`kvix_epp_*`).
 */
/**
 * The data layer's error counters (llm-d's and GAIE's names): the endpoint registry's scrapes. Apart
 * from RouterMetrics so that whichever process scrapes counts them — with `--routing-workers`, the
 * primary scrapes for every worker.
 */
export class DataLayerMetrics {
  readonly pollErrors: DualCounter<'source_type', 'source_type'>;
  readonly extractErrors: DualCounter<'source_type' | 'extractor_type', 'source_type' | 'extractor_type'>;

  constructor(registry: Registry) {
    const registers = [registry];
    const counter = <K extends string>(name: string, help: string, labelNames: readonly K[]): Counter<K> => new Counter({ name, help, labelNames, registers });
    this.pollErrors = new DualCounter(
      counter('llm_d_epp_datalayer_poll_errors_total', 'Endpoint metrics scrapes that failed, per data source.', ['source_type'] as const),
      counter('llm_d_inference_scheduler_datalayer_poll_errors_total', deprecated('llm_d_epp_datalayer_poll_errors_total', 'Data-source poll errors.'), ['source_type'] as const),
      same,
    );
    this.extractErrors = new DualCounter(
      counter('llm_d_epp_datalayer_extract_errors_total', 'Endpoint metrics answers from which no load could be read, per source and extractor.', ['source_type', 'extractor_type'] as const),
      counter('llm_d_inference_scheduler_datalayer_extract_errors_total', deprecated('llm_d_epp_datalayer_extract_errors_total', 'Extractor errors.'), ['source_type', 'extractor_type'] as const),
      same,
    );
  }

  /** What the endpoint registry's `onScrapeError` reports, counted as llm-d's metrics-data-source does. */
  scrapeError(kind: 'poll' | 'extract'): void {
    if (kind === 'poll') this.pollErrors.inc({ source_type: 'metrics-data-source' });
    else this.extractErrors.inc({ source_type: 'metrics-data-source', extractor_type: 'core-metrics-extractor' });
  }
}

export class RouterMetrics {
  // Request and latency.
  readonly requests: DualCounter<Req, LegacyReq | 'priority'>;
  readonly errors: DualCounter<Req | 'error_code', LegacyReq | 'error_code'>;
  readonly duration: DualHistogram<Req, LegacyReq>;
  readonly requestSize: DualHistogram<Req, LegacyReq>;
  readonly responseSize: DualHistogram<Req, LegacyReq>;
  readonly inputTokens: DualHistogram<Req, LegacyReq>;
  readonly outputTokens: DualHistogram<Req, LegacyReq>;
  readonly cachedTokens: DualHistogram<Req, LegacyReq>;
  readonly running: DualGauge<Req, 'model_name'>;
  readonly ntpot: DualHistogram<Req, LegacyReq>;
  readonly ttft: DualHistogram<Req | 'streaming', LegacyReq>;
  readonly streamingTpot: DualHistogram<Req, LegacyReq>;
  readonly streamingItl: Histogram<Req>;
  // Pool.
  private poolCollector: (() => void) | null = null;
  private poolCollected = false;
  readonly poolReadyPods: DualGauge<'name', 'name'>;
  readonly poolKvUtilization: DualGauge<'name', 'name'>;
  readonly poolQueue: DualGauge<'name', 'name'>;
  readonly poolRunning: DualGauge<'name', 'name'>;
  readonly poolKvUtilizationStdDev: Gauge<'name'>;
  readonly poolQueueStdDev: Gauge<'name'>;
  readonly poolRunningStdDev: Gauge<'name'>;
  readonly perPodQueue: DualGauge<'name' | 'model_server_endpoint', 'name' | 'model_server_pod'>;
  // Scheduler, processing overhead, plugins, info, model rewrite, data layer.
  readonly schedulerE2e: DualHistogram<never, never>;
  readonly schedulerAttempts: DualCounter<'status' | 'target_model_name' | 'endpoint_name' | 'namespace' | 'port', 'status' | 'target_model_name' | 'pod_name' | 'namespace' | 'port'>;
  readonly requestProcessing: Histogram;
  readonly responseProcessing: Histogram;
  readonly pluginDuration: DualHistogram<'extension_point' | 'plugin_type' | 'plugin_name', 'extension_point' | 'plugin_type' | 'plugin_name'>;
  readonly info: DualGauge<'commit' | 'build_ref', 'commit' | 'build_ref'>;
  readonly modelRewrites: DualCounter<'model_rewrite_name' | 'model_name' | 'target_model', 'model_rewrite_name' | 'model_name' | 'target_model'>;
  readonly dataLayer: DataLayerMetrics;
  // ext_proc streams and in-flight load.
  readonly extProcStreamsInflight: Gauge;
  readonly extProcStreamDuration: Histogram;
  readonly extProcStreams: Counter<'code'>;
  readonly inflightRequests: Gauge<'endpoint_name' | 'namespace' | 'producer_name' | 'fairness_id' | 'priority'>;
  readonly inflightTokens: Gauge<'endpoint_name' | 'namespace' | 'producer_name' | 'fairness_id' | 'priority'>;
  // kvix's own.
  readonly decisions: Counter<'endpoint'>;
  readonly fallbacksUsed: Counter;
  readonly prefixErrors: Counter<'code'>;

  private readonly models = new BoundedLabel(MODEL_LABEL_LIMIT);
  private readonly fairness = new BoundedLabel(FAIRNESS_LABEL_LIMIT);

  /**
   * What computes the pool gauges when they are scraped (the router's endpoints); null clears it.
   * One router per RouterMetrics: a second setter replaces the first.
   */
  setPoolCollector(collect: (() => void) | null): void {
    this.poolCollector = collect;
  }

  /** Every pool gauge asks when scraped; one scrape reads them all in one turn, so compute them once for it. */
  private collectPool(): void {
    if (this.poolCollected || !this.poolCollector) return;
    this.poolCollected = true;
    setImmediate(() => (this.poolCollected = false));
    this.poolCollector();
  }

  constructor(registry: Registry) {
    const registers = [registry];
    const legacyModel = pick(['model_name', 'target_model_name'] as const);
    const counter = <K extends string>(name: string, help: string, labelNames: readonly K[]): Counter<K> => new Counter({ name, help, labelNames, registers });
    // Gauges of this process's own work (requests in flight, streams open) add up across the
    // processes of one EPP (`--routing-workers`); the rest describe the pool or the build, which
    // every process sees alike, so summing them would read N times the truth: `aggregator` says how
    // prom-client's cluster aggregation combines each.
    const gauge = <K extends string>(name: string, help: string, labelNames: readonly K[], aggregator: 'sum' | 'max' = 'sum'): Gauge<K> => new Gauge({ name, help, labelNames, registers, aggregator });
    // Pool gauges are computed when scraped, from the endpoints as they are then (a timer left them
    // without samples until its first tick, and a scrape could read values up to a tick old).
    const poolGauge = <K extends string>(name: string, help: string, labelNames: readonly K[]): Gauge<K> =>
      new Gauge({ name, help, labelNames, registers, aggregator: 'average', collect: () => this.collectPool() });
    const histogram = <K extends string>(name: string, help: string, labelNames: readonly K[], buckets: number[]): Histogram<K> => new FastHistogram({ name, help, labelNames, buckets, registers });
    const reqHistogram = (current: string, legacy: string, help: string, buckets: number[]): DualHistogram<Req, LegacyReq> =>
      new DualHistogram(histogram(current, help, REQUEST_LABELS, buckets), histogram(legacy, deprecated(current, help), ['model_name', 'target_model_name'] as const, buckets), legacyModel);

    this.requests = new DualCounter(
      counter('llm_d_epp_request_total', 'Requests routed, per client model, target model, fairness id and priority.', REQUEST_LABELS),
      counter('inference_objective_request_total', deprecated('llm_d_epp_request_total', 'Requests routed.'), ['model_name', 'target_model_name', 'priority'] as const),
      pick(['model_name', 'target_model_name', 'priority'] as const),
    );
    this.errors = new DualCounter(
      counter('llm_d_epp_request_error_total', 'Requests that failed, per model and error code.', [...REQUEST_LABELS, 'error_code'] as const),
      counter('inference_objective_request_error_total', deprecated('llm_d_epp_request_error_total', 'Requests that failed.'), ['model_name', 'target_model_name', 'error_code'] as const),
      pick(['model_name', 'target_model_name', 'error_code'] as const),
    );
    this.duration = reqHistogram('llm_d_epp_request_duration_seconds', 'inference_objective_request_duration_seconds', 'From the request entering the router to its response ending.', LATENCY);
    this.requestSize = reqHistogram('llm_d_epp_request_size_bytes', 'inference_objective_request_sizes', 'Request body size in bytes.', SIZES);
    this.responseSize = reqHistogram('llm_d_epp_response_size_bytes', 'inference_objective_response_sizes', 'Response body size in bytes, as the model server sent it.', SIZES);
    this.inputTokens = reqHistogram('llm_d_epp_request_input_tokens', 'inference_objective_input_tokens', 'Prompt tokens per request (from the response usage).', TOKENS);
    this.outputTokens = reqHistogram('llm_d_epp_request_output_tokens', 'inference_objective_output_tokens', 'Completion tokens per request (from the response usage).', TOKENS.slice(0, 12));
    this.cachedTokens = reqHistogram('llm_d_epp_request_cached_tokens', 'inference_objective_prompt_cached_tokens', 'Prompt tokens the model server served from its prefix cache (usage.prompt_tokens_details.cached_tokens).', TOKENS);
    this.running = new DualGauge(
      gauge('llm_d_epp_request_running', 'Requests in flight through the router.', REQUEST_LABELS),
      gauge('inference_objective_running_requests', deprecated('llm_d_epp_request_running', 'Requests in flight, per model.'), ['model_name'] as const),
      pick(['model_name'] as const),
    );
    this.ntpot = reqHistogram('llm_d_epp_request_ntpot_seconds', 'inference_objective_normalized_time_per_output_token_seconds', 'Request duration divided by its output tokens.', PER_TOKEN);
    this.ttft = new DualHistogram(
      histogram('llm_d_epp_request_ttft_seconds', 'From the request entering the router to the first response body bytes.', [...REQUEST_LABELS, 'streaming'] as const, LATENCY),
      histogram('inference_objective_request_ttft_seconds', deprecated('llm_d_epp_request_ttft_seconds', 'Time to first token.'), ['model_name', 'target_model_name'] as const, LATENCY),
      legacyModel,
    );
    this.streamingTpot = reqHistogram('llm_d_epp_request_streaming_tpot_seconds', 'inference_objective_request_tpot_seconds', 'Streamed responses: from the first to the last token chunk, per token after the first.', PER_TOKEN);
    this.streamingItl = histogram('llm_d_epp_request_streaming_itl_seconds', 'Streamed responses: time between consecutive token chunks.', REQUEST_LABELS, PER_TOKEN);

    const pool = (current: string, legacy: string, help: string): DualGauge<'name', 'name'> => new DualGauge(poolGauge(current, help, ['name'] as const), poolGauge(legacy, deprecated(current, help), ['name'] as const), same);
    this.poolReadyPods = pool('llm_d_epp_ready_endpoints', 'inference_pool_ready_pods', 'Endpoints in the candidate set (healthy, not draining).');
    this.poolKvUtilization = pool('llm_d_epp_average_kv_cache_utilization', 'inference_pool_average_kv_cache_utilization', 'Mean KV-cache utilisation of the ready endpoints.');
    this.poolQueue = pool('llm_d_epp_average_queue_size', 'inference_pool_average_queue_size', 'Mean waiting requests of the ready endpoints.');
    this.poolRunning = pool('llm_d_epp_average_running_requests', 'inference_pool_average_running_requests', 'Mean running requests of the ready endpoints.');
    this.poolKvUtilizationStdDev = poolGauge('llm_d_epp_std_dev_kv_cache_utilization', 'Standard deviation of KV-cache utilisation over the ready endpoints.', ['name'] as const);
    this.poolQueueStdDev = poolGauge('llm_d_epp_std_dev_queue_size', 'Standard deviation of waiting requests over the ready endpoints.', ['name'] as const);
    this.poolRunningStdDev = poolGauge('llm_d_epp_std_dev_running_requests', 'Standard deviation of running requests over the ready endpoints.', ['name'] as const);
    this.perPodQueue = new DualGauge(
      poolGauge('llm_d_epp_per_endpoint_queue_size', 'Waiting requests per endpoint.', ['name', 'model_server_endpoint'] as const),
      poolGauge('inference_pool_per_pod_queue_size', deprecated('llm_d_epp_per_endpoint_queue_size', 'Waiting requests per pod.'), ['name', 'model_server_pod'] as const),
      (l) => ({ ...(l.name !== undefined ? { name: l.name } : {}), ...(l.model_server_endpoint !== undefined ? { model_server_pod: l.model_server_endpoint } : {}) }),
    );

    this.schedulerE2e = new DualHistogram(
      histogram('llm_d_epp_scheduler_e2e_duration_seconds', 'Scheduling one request: producers, admitters, filters, scorers and picker.', [], SCHEDULER),
      histogram('inference_extension_scheduler_e2e_duration_seconds', deprecated('llm_d_epp_scheduler_e2e_duration_seconds', 'Scheduling one request.'), [], SCHEDULER),
      same,
    );
    this.schedulerAttempts = new DualCounter(
      counter('llm_d_epp_scheduler_attempts_total', 'Scheduling attempts, by status (success, failure) and the endpoint chosen.', ['status', 'target_model_name', 'endpoint_name', 'namespace', 'port'] as const),
      counter('inference_extension_scheduler_attempts_total', deprecated('llm_d_epp_scheduler_attempts_total', 'Scheduling attempts.'), ['status', 'target_model_name', 'pod_name', 'namespace', 'port'] as const),
      ({ endpoint_name, ...rest }) => ({ ...rest, ...(endpoint_name !== undefined ? { pod_name: endpoint_name } : {}) }),
    );
    this.requestProcessing = histogram('llm_d_epp_request_processing_duration_seconds', 'From a request reaching the router until its body was handled (parse, alias, schedule, hooks).', [], PROCESSING);
    this.responseProcessing = histogram('llm_d_epp_response_processing_duration_seconds', 'Time the router spent handling a response\'s chunks (model server time between chunks excluded).', [], PROCESSING);
    this.pluginDuration = new DualHistogram(
      histogram('llm_d_epp_plugin_duration_seconds', 'Time in each plugin, per extension point.', ['extension_point', 'plugin_type', 'plugin_name'] as const, SCHEDULER),
      histogram('inference_extension_plugin_duration_seconds', deprecated('llm_d_epp_plugin_duration_seconds', 'Time in each plugin.'), ['extension_point', 'plugin_type', 'plugin_name'] as const, SCHEDULER),
      same,
    );
    this.info = new DualGauge(
      gauge('llm_d_epp_info', 'Build information (always 1).', ['commit', 'build_ref'] as const, 'max'),
      gauge('inference_extension_info', deprecated('llm_d_epp_info', 'Build information.'), ['commit', 'build_ref'] as const, 'max'),
      same,
    );
    this.modelRewrites = new DualCounter(
      counter('llm_d_epp_model_rewrite_decisions_total', 'Requests whose model was rewritten, per rule, client model and target.', ['model_rewrite_name', 'model_name', 'target_model'] as const),
      counter('inference_extension_model_rewrite_decisions_total', deprecated('llm_d_epp_model_rewrite_decisions_total', 'Model-rewrite decisions.'), ['model_rewrite_name', 'model_name', 'target_model'] as const),
      same,
    );
    this.dataLayer = new DataLayerMetrics(registry);
    this.extProcStreamsInflight = gauge('llm_d_epp_extproc_streams_inflight', 'ext_proc gRPC streams open.', []);
    this.extProcStreamDuration = histogram('llm_d_epp_extproc_stream_duration_seconds', 'How long an ext_proc gRPC stream stayed open.', [], STREAM);
    this.extProcStreams = counter('llm_d_epp_extproc_streams_total', 'ext_proc gRPC streams closed, by gRPC status code.', ['code'] as const);
    const inflight = ['endpoint_name', 'namespace', 'producer_name', 'fairness_id', 'priority'] as const;
    this.inflightRequests = gauge('llm_d_epp_inflight_requests', 'Requests this router sent to each endpoint that have not finished.', inflight);
    this.inflightTokens = gauge('llm_d_epp_inflight_tokens', 'Prompt tokens this router sent to each endpoint in requests that have not finished.', inflight);

    this.decisions = counter('kvix_epp_decisions_total', 'Requests sent to each endpoint (first choice).', ['endpoint'] as const);
    this.fallbacksUsed = new Counter({ name: 'kvix_epp_fallbacks_used_total', help: 'Requests served by a fallback endpoint because the choice was unreachable.', registers });
    this.prefixErrors = counter('kvix_epp_prefix_scorer_errors_total', 'Requests scored without precise prefix data, by error code.', ['code'] as const);
  }

  /**
   * A request's label values, with client-controlled ones bounded as llm-d bounds them: past
   * 1000 distinct model names (or fairness ids) new ones read `other`, so no client can grow the
   * registry without limit. Configured model names (`pinModel`) are never folded.
   */
  requestLabels(clientModel: string, targetModel: string, fairnessId: string | undefined, priority: number): RequestLabels {
    return {
      model_name: this.models.of(clientModel),
      target_model_name: this.models.of(targetModel),
      fairness_id: this.fairness.of(fairnessId || DEFAULT_FAIRNESS_ID),
      priority: String(priority),
    };
  }

  /** A model name from the configuration (a rewrite's alias or target): always its own label value. */
  pinModel(model: string): void {
    this.models.pin(model);
  }

  /** Sets `llm_d_epp_info` (and its twin) to 1 for this build. */
  setInfo(commit: string, buildRef: string): void {
    this.info.set({ commit, build_ref: buildRef }, 1);
  }
}
