import { randomUUID } from 'node:crypto';
import { UNTRUSTED_TEMPLATE_MESSAGE } from '@kvix/tokenization';
import { withSpan, withSpanSync } from '@kvix/telemetry';
import type { Logger } from 'pino';
import type { EndpointPickerConfig } from './config.js';
import type { EndpointRegistry } from './datalayer/endpoint-registry.js';
import type { RequestLabels, RouterMetrics } from './metrics.js';
import { ModelRewriter, type PoolRewriteRule } from './request/model-rewrite.js';
import { parseOpenAiBody, RequestError, type ParsedRequestBody } from './request/openai-body.js';
import { PREFIX_MATCH, type PrefixMatch } from './plugins/prefix-match.js';
import { ResponseStream } from './request/response-stream.js';
import { AdmissionDeniedError, NoCandidatesError, type Scheduler } from './scheduler.js';
import { newDecisionTimings, type Candidate, type DecisionTimings, type Endpoint, type SchedulingRequest, type SchedulingResult } from './types.js';

export interface RouteInput {
  /** x-request-id when the proxy has one; generated otherwise. */
  requestId?: string | null;
  path: string;
  /** Lower-case names. */
  headers: Readonly<Record<string, string>>;
  body: Buffer | null;
  /** The proxy's subset hint: only these endpoints may be chosen. */
  subset?: readonly string[] | null;
}

export interface Rejection {
  status: number;
  code: string;
  message: string;
  headers: Record<string, string>;
}

export type RouteOutcome = { ok: true; routed: RoutedRequest } | { ok: false; rejection: Rejection };

export interface DirectorOptions {
  registry: EndpointRegistry;
  scheduler: Scheduler;
  config: Pick<EndpointPickerConfig, 'modelRewrites' | 'objectives' | 'saturation'>;
  metrics: RouterMetrics | null;
  /** InferencePool name in pool metrics. */
  poolName: string;
  logger: Logger;
  random?: () => number;
  observer?: DirectorObserver;
  /** Route chat requests carrying their own chat template; refused with 400 otherwise (vLLM's rule). */
  trustRequestChatTemplate?: boolean;
}

/** Hooks for whoever embeds the router (benchmarks, decision logs). */
export interface DirectorObserver {
  /** A request was scheduled: how long the decision took (parsing, tokenizing, scoring, picking, hooks). */
  routed?(event: { requestId: string; seconds: number; endpoints: readonly string[]; scores: Readonly<Record<string, number>>; timings: Readonly<DecisionTimings> }): void;
}

export const DROPPED_REASON_HEADER = 'x-llm-d-request-dropped-reason';

/**
 * A request's way through the router, whatever carries it (Envoy ext_proc or the HTTP gateway):
 * parse the body, resolve aliases, find candidates (healthy, not draining, within the proxy's
 * subset, serving the model), shed it if the pool is saturated and it may be shed, schedule,
 * run the pre-request hooks, and account for the response.
 */
export class RequestDirector {
  private readonly rewriter: ModelRewriter;
  private readonly configPriorities: Map<string, number>;
  private priorities: Map<string, number>;
  private poolObjectives: readonly { name: string; priority: number }[] = [];

  constructor(private readonly options: DirectorOptions) {
    this.rewriter = new ModelRewriter(options.config.modelRewrites, options.random);
    this.configPriorities = new Map(options.config.objectives.map((o) => [o.name, o.priority]));
    this.priorities = this.configPriorities;
    for (const r of options.config.modelRewrites) for (const m of [r.model, ...r.targets.map((t) => t.model)]) options.metrics?.pinModel(m);
  }

  /**
   * The pool's InferenceModelRewrite and InferenceObjective resources (Kubernetes), applied from the
   * next request on. An objective of the pool overrides one of the same name in the configuration.
   */
  setPoolResources(resources: { rewrites: readonly PoolRewriteRule[]; objectives: readonly { name: string; priority: number }[] }): void {
    this.rewriter.setPoolRules(resources.rewrites);
    // Names an operator configured keep their own label values in the request series.
    for (const r of resources.rewrites) for (const m of [...r.models, ...r.targets.map((t) => t.model)]) this.options.metrics?.pinModel(m);
    this.poolObjectives = resources.objectives;
    const merged = new Map(this.configPriorities);
    for (const o of resources.objectives) merged.set(o.name, o.priority);
    this.priorities = merged;
  }

  /** Rewrite rules and objectives in force, wherever they came from. */
  describePolicies(): { modelRewrites: ReturnType<ModelRewriter['describe']>; objectives: { name: string; priority: number; source: string }[] } {
    const pool = new Set(this.poolObjectives.map((o) => o.name));
    return {
      modelRewrites: this.rewriter.describe(),
      objectives: [...this.priorities].map(([name, priority]) => ({ name, priority, source: pool.has(name) ? 'InferenceObjective' : 'scheduler-config' })),
    };
  }

  get registry(): EndpointRegistry {
    return this.options.registry;
  }

  get aliases(): string[] {
    return this.rewriter.aliases;
  }

  /** Keeps the pool gauges current (ready pods, mean KV usage and queue): computed when scraped. */
  startPoolMetrics(): void {
    this.options.metrics?.setPoolCollector(() => this.refreshPoolMetrics());
  }

  stop(): void {
    this.options.metrics?.setPoolCollector(null);
  }

  async route(input: RouteInput): Promise<RouteOutcome> {
    const id = input.requestId || randomUUID();
    const received = performance.now();
    const timings = newDecisionTimings();
    let parsed: ParsedRequestBody | null;
    try {
      parsed = withSpanSync('kvix.parse', { 'url.path': input.path, 'kvix.body_bytes': input.body?.length ?? 0 }, () => parseOpenAiBody(input.path, input.body));
      timings.parse = performance.now() - received;
    } catch (err) {
      if (err instanceof RequestError) return this.reject(this.options.metrics?.requestLabels('', '', undefined, 0) ?? null, err.status, err.code, err.message);
      throw err;
    }
    // Refused before anything renders it: a template is a program, and the pods refuse it too.
    if (parsed?.kind === 'chat' && !this.options.trustRequestChatTemplate && carriesChatTemplate(parsed.json)) {
      return this.reject(this.options.metrics?.requestLabels(parsed.model, parsed.model, undefined, 0) ?? null, 400, 'INVALID_REQUEST', UNTRUSTED_TEMPLATE_MESSAGE);
    }
    const clientModel = parsed?.model ?? '';
    const rewrite = this.rewriter.resolve(clientModel, input.headers['x-llm-d-model-name-rewrite']);
    const targetModel = rewrite.target;
    if (rewrite.rule !== null) this.options.metrics?.modelRewrites.inc({ model_rewrite_name: rewrite.rule, model_name: clientModel, target_model: targetModel });
    let body = input.body;
    let bodyChanged = false;
    if (parsed && targetModel !== clientModel) {
      parsed.json['model'] = targetModel;
      body = Buffer.from(JSON.stringify(parsed.json));
      bodyChanged = true;
    }
    // llm-d still reads the objective under its Gateway API Inference Extension name.
    const priority = this.priorities.get(input.headers['x-llm-d-inference-objective'] ?? input.headers['x-gateway-inference-objective'] ?? '') ?? 0;
    const labels = this.options.metrics?.requestLabels(clientModel, targetModel, input.headers['x-llm-d-inference-fairness-id'] ?? input.headers['x-gateway-inference-fairness-id'], priority) ?? null;
    if (labels && input.body) this.options.metrics?.requestSize.observe(labels, input.body.length);
    const request: SchedulingRequest = {
      id,
      model: targetModel,
      prompt: parsed?.prompt ? { model: targetModel, prompt: parsed.prompt, cacheSalt: parsed.cacheSalt } : null,
      headers: input.headers,
      cycle: new Map(),
      priority,
      timings,
    };
    const candidates = this.candidatesFor(targetModel, input.subset ?? null);
    if (candidates.length === 0) return this.reject(labels, 503, 'NO_ENDPOINTS', input.subset ? 'no ready endpoint in the subset the proxy allowed' : 'no ready endpoint to send the request to');
    if (priority < 0 && this.saturated(candidates)) {
      return this.reject(labels, 429, 'SATURATED', 'every endpoint is saturated and this request is sheddable', { [DROPPED_REASON_HEADER]: 'rejected-saturated' });
    }
    let result: SchedulingResult;
    try {
      result = await withSpan('kvix.schedule', { 'kvix.model': targetModel, 'kvix.candidates': candidates.length }, () => this.options.scheduler.schedule(request, candidates));
    } catch (err) {
      if (err instanceof NoCandidatesError || err instanceof AdmissionDeniedError) this.options.metrics?.schedulerAttempts.inc({ status: 'failure', target_model_name: labels?.target_model_name ?? targetModel, endpoint_name: '', namespace: '', port: '' });
      if (err instanceof NoCandidatesError) return this.reject(labels, 503, 'NO_ENDPOINTS', err.message);
      if (err instanceof AdmissionDeniedError) return this.reject(labels, err.denial.status, err.denial.code, err.denial.message, { [DROPPED_REASON_HEADER]: err.denial.droppedReason });
      throw err;
    }
    const chosen = result.endpoints[0];
    if (!chosen) return this.reject(labels, 503, 'NO_ENDPOINTS', 'the picker chose no endpoint');
    if (this.options.logger.isLevelEnabled('debug')) this.options.logger.debug({ request: id, model: targetModel, chosen: result.endpoints.map((e) => e.id), total: result.total, scores: result.scores }, 'request scheduled');
    const hooksStarted = performance.now();
    await withSpan('kvix.pre_request', {}, () => this.options.scheduler.preRequest(request, result)).catch((err: unknown) => this.options.logger.warn({ request: id, err: (err as Error).message }, 'a pre-request hook failed'));
    const decided = performance.now();
    timings.hooks = decided - hooksStarted;
    this.options.observer?.routed?.({ requestId: id, seconds: (decided - received) / 1000, endpoints: result.endpoints.map((e) => e.id), scores: result.total, timings });
    const m = this.options.metrics;
    if (m && labels) {
      m.requests.inc(labels);
      m.decisions.inc({ endpoint: chosen.id });
      m.schedulerAttempts.inc({ status: 'success', target_model_name: labels.target_model_name, endpoint_name: chosen.name, namespace: chosen.labels['namespace'] ?? '', port: String(chosen.port) });
      m.requestProcessing.observe((performance.now() - received) / 1000);
    }
    return { ok: true, routed: new RoutedRequest(this, request, result, { clientModel, targetModel, labels, body, bodyChanged, stream: parsed?.stream ?? false, received }) };
  }

  /** Candidates for a model: endpoints that say they serve it (or have it loaded as a LoRA); all ready ones when none does. */
  private candidatesFor(model: string, subset: readonly string[] | null): Candidate[] {
    const ready = this.options.registry.candidates(subset ? new Set(subset) : null);
    if (model === '') return ready;
    const serving = ready.filter((c) => c.endpoint.model === model || c.endpoint.adapters?.includes(model) || c.metrics?.loras.includes(model));
    return serving.length > 0 ? serving : ready;
  }

  private saturated(candidates: readonly Candidate[]): boolean {
    const { queueDepthThreshold, kvCacheUtilThreshold } = this.options.config.saturation;
    return candidates.every((c) => c.metrics !== null && (c.metrics.waiting >= queueDepthThreshold || c.metrics.kvUsage >= kvCacheUtilThreshold));
  }

  private reject(labels: RequestLabels | null, status: number, code: string, message: string, headers: Record<string, string> = {}): RouteOutcome {
    if (labels) this.options.metrics?.errors.inc({ ...labels, error_code: code });
    if (status >= 500) this.options.logger.warn({ model: labels?.model_name, code, message }, 'request not routed');
    return { ok: false, rejection: { status, code, message, headers } };
  }

  /** @internal */
  hooks(): { scheduler: Scheduler; metrics: RouterMetrics | null; registry: EndpointRegistry; logger: Logger } {
    return { scheduler: this.options.scheduler, metrics: this.options.metrics, registry: this.options.registry, logger: this.options.logger };
  }

  private refreshPoolMetrics(): void {
    const m = this.options.metrics!;
    const name = this.options.poolName;
    const ready = this.options.registry.candidates();
    m.poolReadyPods.set({ name }, ready.length);
    const withMetrics = ready.filter((c) => c.metrics !== null);
    const mean = (f: (c: Candidate) => number): number => (withMetrics.length > 0 ? withMetrics.reduce((a, c) => a + f(c), 0) / withMetrics.length : 0);
    const stdDev = (f: (c: Candidate) => number): number => {
      const mu = mean(f);
      return withMetrics.length > 0 ? Math.sqrt(withMetrics.reduce((a, c) => a + (f(c) - mu) ** 2, 0) / withMetrics.length) : 0;
    };
    const kv = (c: Candidate): number => c.metrics!.kvUsage;
    const waiting = (c: Candidate): number => c.metrics!.waiting;
    const running = (c: Candidate): number => c.metrics!.running;
    m.poolKvUtilization.set({ name }, mean(kv));
    m.poolQueue.set({ name }, mean(waiting));
    m.poolRunning.set({ name }, mean(running));
    m.poolKvUtilizationStdDev.set({ name }, stdDev(kv));
    m.poolQueueStdDev.set({ name }, stdDev(waiting));
    m.poolRunningStdDev.set({ name }, stdDev(running));
    m.perPodQueue.reset();
    for (const c of withMetrics) m.perPodQueue.set({ name, model_server_endpoint: c.endpoint.name }, c.metrics!.waiting);
  }
}

/** A routed request, until its response ends. */
export class RoutedRequest {
  readonly id: string;
  readonly endpoints: Endpoint[];
  readonly clientModel: string;
  readonly targetModel: string;
  /** The body to send upstream (rewritten when aliased). */
  readonly body: Buffer | null;
  readonly bodyChanged: boolean;
  readonly stream: boolean;
  private servedBy: Endpoint | null = null;
  private finished = false;
  private responseBody: ResponseStream | null = null;
  private completionTokens: number | null = null;
  private readonly received: number;
  /** Metric labels (null without metrics). */
  private readonly labels: RequestLabels | null;
  private inflightLabels: Record<'endpoint_name' | 'namespace' | 'producer_name' | 'fairness_id' | 'priority', string> | null = null;
  private promptTokens = 0;
  private firstTokenAt: number | null = null;
  private lastTokenAt: number | null = null;

  constructor(
    private readonly director: RequestDirector,
    private readonly request: SchedulingRequest,
    readonly result: SchedulingResult,
    info: { clientModel: string; targetModel: string; labels: RequestLabels | null; body: Buffer | null; bodyChanged: boolean; stream: boolean; received: number },
  ) {
    this.id = request.id;
    this.endpoints = result.endpoints;
    this.clientModel = info.clientModel;
    this.targetModel = info.targetModel;
    this.body = info.body;
    this.bodyChanged = info.bodyChanged;
    this.stream = info.stream;
    this.received = info.received;
    this.labels = info.labels;
    const { registry, metrics } = director.hooks();
    // Counted against the choice at once, so a burst sees it before the response starts.
    registry.acquire(this.endpoints[0]!.id);
    if (metrics && this.labels) {
      metrics.running.inc(this.labels);
      this.trackInflight(this.endpoints[0]!);
    }
  }

  /** llm-d's in-flight gauges follow the endpoint actually serving (a fallback moves them). */
  private trackInflight(endpoint: Endpoint): void {
    const metrics = this.director.hooks().metrics;
    if (!metrics || !this.labels) return;
    if (this.inflightLabels) {
      metrics.inflightRequests.dec(this.inflightLabels);
      metrics.inflightTokens.dec(this.inflightLabels, this.promptTokens);
    }
    const match = this.request.cycle.get(PREFIX_MATCH) as PrefixMatch | undefined;
    this.promptTokens = match?.promptTokens ?? 0;
    this.inflightLabels = { endpoint_name: endpoint.name, namespace: endpoint.labels['namespace'] ?? '', producer_name: 'inflight-load-producer', fairness_id: this.labels.fairness_id, priority: this.labels.priority };
    metrics.inflightRequests.inc(this.inflightLabels);
    metrics.inflightTokens.inc(this.inflightLabels, this.promptTokens);
  }

  /**
   * The chosen endpoint alone, for the `x-gateway-destination-endpoint` header: Envoy's
   * ORIGINAL_DST cluster and its header-sourced override_host policy each read one `ip:port` there
   * (a list makes ORIGINAL_DST answer 503, `original_dst_host_invalid`).
   */
  get primaryDestination(): string {
    return this.endpoints[0]!.id;
  }

  /**
   * The chosen endpoint then the fallbacks, comma-separated, for the `envoy.lb` dynamic metadata
   * (GAIE endpoint-picker protocol, "Destination Endpoint"): Envoy's override_host policy sends the
   * request to the first and moves down the list on each retry.
   */
  get destinationList(): string {
    return this.endpoints.map((e) => e.id).join(',');
  }

  /** The proxy could not reach this endpoint (it tries the next): it leaves the candidate set now. */
  unreachable(endpointId: string, reason: string): void {
    this.director.hooks().registry.markDown(endpointId, reason);
  }

  /** Which endpoint actually answers (a fallback when the choice was unreachable). */
  served(endpointId: string): void {
    if (this.servedBy?.id === endpointId) return;
    const { registry, metrics } = this.director.hooks();
    const endpoint = this.endpoints.find((e) => e.id === endpointId) ?? registry.get(endpointId) ?? null;
    if (!endpoint) return;
    const previous = this.servedBy ?? this.endpoints[0]!;
    // A proxy moves down the fallback list only past endpoints it could not reach.
    const at = this.endpoints.findIndex((e) => e.id === endpointId);
    if (this.servedBy === null && at > 0) for (const skipped of this.endpoints.slice(0, at)) registry.markDown(skipped.id, `the proxy fell back past it to ${endpointId}`);
    if (previous.id !== endpointId) {
      registry.release(previous.id);
      registry.acquire(endpointId);
      if (this.servedBy === null) metrics?.fallbacksUsed.inc();
      this.trackInflight(endpoint);
    }
    this.servedBy = endpoint;
  }

  /** Headers plugins add to the response (a session token). */
  responseHeaders(): Record<string, string> {
    return this.director.hooks().scheduler.responseHeaders(this.request, this.servedBy ?? this.endpoints[0]!);
  }

  /** Transforms and observes the response body (model names back, TTFT, usage). */
  responseStream(contentType: string | null): ResponseStream {
    const { metrics, scheduler } = this.director.hooks();
    const labels = this.labels;
    const sse = this.stream || (contentType ?? '').includes('text/event-stream');
    this.responseBody = new ResponseStream({
      rewrite: this.clientModel !== this.targetModel ? { from: this.targetModel, to: this.clientModel } : null,
      sse,
      onFirstBytes: () => {
        if (labels) metrics?.ttft.observe({ ...labels, streaming: String(sse) }, (performance.now() - this.received) / 1000);
      },
      onFirstToken: () => scheduler.responseFirstToken(this.request, this.servedBy ?? this.endpoints[0]!),
      onTokenChunk: () => {
        const now = performance.now();
        if (labels && this.lastTokenAt !== null) metrics?.streamingItl.observe(labels, (now - this.lastTokenAt) / 1000);
        this.firstTokenAt ??= now;
        this.lastTokenAt = now;
      },
      onUsage: (u) => {
        this.completionTokens = u.completionTokens;
        if (!labels || !metrics) return;
        metrics.inputTokens.observe(labels, u.promptTokens);
        metrics.outputTokens.observe(labels, u.completionTokens);
        if (u.cachedTokens !== null) metrics.cachedTokens.observe(labels, u.cachedTokens);
      },
    });
    return this.responseBody;
  }

  /** The response ended (or the request failed): in-flight count and metrics. Idempotent. */
  finish(outcome: { status: number | null; error?: string }): void {
    if (this.finished) return;
    this.finished = true;
    const { registry, metrics, scheduler } = this.director.hooks();
    registry.release((this.servedBy ?? this.endpoints[0]!).id);
    if (metrics && this.labels) metrics.running.dec(this.labels);
    if (metrics && this.inflightLabels) {
      metrics.inflightRequests.dec(this.inflightLabels);
      metrics.inflightTokens.dec(this.inflightLabels, this.promptTokens);
    }
    const streamed = this.responseBody?.sse ?? false;
    scheduler.responseComplete(this.request, {
      servedBy: this.servedBy ?? this.endpoints[0]!,
      status: outcome.status,
      error: outcome.error ?? null,
      streamed,
      completionTokens: this.completionTokens ?? (streamed ? (this.responseBody?.tokenChunks ?? null) : null),
    });
    const labels = this.labels;
    if (!metrics || !labels) return;
    const seconds = (performance.now() - this.received) / 1000;
    metrics.duration.observe(labels, seconds);
    const body = this.responseBody;
    if (body) {
      metrics.responseSize.observe(labels, body.bytes);
      metrics.responseProcessing.observe(body.handlingSeconds);
    }
    const tokens = this.completionTokens ?? body?.tokenChunks ?? 0;
    if (tokens > 0) metrics.ntpot.observe(labels, seconds / tokens);
    if (streamed && this.firstTokenAt !== null && this.lastTokenAt !== null && tokens > 1) metrics.streamingTpot.observe(labels, (this.lastTokenAt - this.firstTokenAt) / 1000 / (tokens - 1));
    if (outcome.error !== undefined || (outcome.status !== null && outcome.status >= 500)) {
      metrics.errors.inc({ ...labels, error_code: outcome.error ?? `HTTP_${outcome.status}` });
    }
  }
}

/** vLLM's test: a non-null `chat_template`, or one inside `chat_template_kwargs`, whatever its type. */
function carriesChatTemplate(body: Record<string, unknown>): boolean {
  const kwargs = body['chat_template_kwargs'];
  const inKwargs = typeof kwargs === 'object' && kwargs !== null ? (kwargs as Record<string, unknown>)['chat_template'] : undefined;
  return (body['chat_template'] !== undefined && body['chat_template'] !== null) || (inKwargs !== undefined && inKwargs !== null);
}
