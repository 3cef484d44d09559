import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { EndpointPickerConfig } from './config.js';
import type { EndpointRegistry } from './datalayer/endpoint-registry.js';
import type { RouterMetrics } from './metrics.js';
import { ModelRewriter } from './request/model-rewrite.js';
import { parseOpenAiBody, RequestError, type ParsedRequestBody } from './request/openai-body.js';
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
  private readonly priorities: Map<string, number>;
  private poolTimer: NodeJS.Timeout | null = null;

  constructor(private readonly options: DirectorOptions) {
    this.rewriter = new ModelRewriter(options.config.modelRewrites, options.random);
    this.priorities = new Map(options.config.objectives.map((o) => [o.name, o.priority]));
  }

  get registry(): EndpointRegistry {
    return this.options.registry;
  }

  get aliases(): string[] {
    return this.rewriter.aliases;
  }

  /** Keeps the pool gauges current (ready pods, mean KV usage and queue). */
  startPoolMetrics(intervalMs = 1000): void {
    if (this.poolTimer || !this.options.metrics) return;
    this.poolTimer = setInterval(() => this.refreshPoolMetrics(), intervalMs);
    this.poolTimer.unref();
  }

  stop(): void {
    if (this.poolTimer) clearInterval(this.poolTimer);
    this.poolTimer = null;
  }

  async route(input: RouteInput): Promise<RouteOutcome> {
    const id = input.requestId || randomUUID();
    const received = performance.now();
    const timings = newDecisionTimings();
    let parsed: ParsedRequestBody | null;
    try {
      parsed = parseOpenAiBody(input.path, input.body);
      timings.parse = performance.now() - received;
    } catch (err) {
      if (err instanceof RequestError) return this.reject('', '', err.status, err.code, err.message);
      throw err;
    }
    const clientModel = parsed?.model ?? '';
    const targetModel = this.rewriter.target(clientModel, input.headers['x-llm-d-model-name-rewrite']);
    let body = input.body;
    let bodyChanged = false;
    if (parsed && targetModel !== clientModel) {
      parsed.json['model'] = targetModel;
      body = Buffer.from(JSON.stringify(parsed.json));
      bodyChanged = true;
    }
    // llm-d still reads the objective under its Gateway API Inference Extension name.
    const priority = this.priorities.get(input.headers['x-llm-d-inference-objective'] ?? input.headers['x-gateway-inference-objective'] ?? '') ?? 0;
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
    if (candidates.length === 0) return this.reject(clientModel, targetModel, 503, 'NO_ENDPOINTS', input.subset ? 'no ready endpoint in the subset the proxy allowed' : 'no ready endpoint to send the request to');
    if (priority < 0 && this.saturated(candidates)) {
      return this.reject(clientModel, targetModel, 429, 'SATURATED', 'every endpoint is saturated and this request is sheddable', { [DROPPED_REASON_HEADER]: 'rejected-saturated' });
    }
    let result: SchedulingResult;
    try {
      result = await this.options.scheduler.schedule(request, candidates);
    } catch (err) {
      if (err instanceof NoCandidatesError) return this.reject(clientModel, targetModel, 503, 'NO_ENDPOINTS', err.message);
      if (err instanceof AdmissionDeniedError) return this.reject(clientModel, targetModel, err.denial.status, err.denial.code, err.denial.message, { [DROPPED_REASON_HEADER]: err.denial.droppedReason });
      throw err;
    }
    const chosen = result.endpoints[0];
    if (!chosen) return this.reject(clientModel, targetModel, 503, 'NO_ENDPOINTS', 'the picker chose no endpoint');
    if (this.options.logger.isLevelEnabled('debug')) this.options.logger.debug({ request: id, model: targetModel, chosen: result.endpoints.map((e) => e.id), total: result.total, scores: result.scores }, 'request scheduled');
    const hooksStarted = performance.now();
    await this.options.scheduler.preRequest(request, result).catch((err: unknown) => this.options.logger.warn({ request: id, err: (err as Error).message }, 'a pre-request hook failed'));
    const decided = performance.now();
    timings.hooks = decided - hooksStarted;
    this.options.observer?.routed?.({ requestId: id, seconds: (decided - received) / 1000, endpoints: result.endpoints.map((e) => e.id), scores: result.total, timings });
    this.options.metrics?.requests.inc({ model_name: clientModel, target_model_name: targetModel });
    this.options.metrics?.decisions.inc({ endpoint: chosen.id });
    return { ok: true, routed: new RoutedRequest(this, request, result, { clientModel, targetModel, body, bodyChanged, stream: parsed?.stream ?? false, received }) };
  }

  /** Candidates for a model: endpoints that say they serve it (or have it loaded as a LoRA); all ready ones when none does. */
  private candidatesFor(model: string, subset: readonly string[] | null): Candidate[] {
    const ready = this.options.registry.candidates(subset ? new Set(subset) : null);
    if (model === '') return ready;
    const serving = ready.filter((c) => c.endpoint.model === model || c.metrics?.loras.includes(model));
    return serving.length > 0 ? serving : ready;
  }

  private saturated(candidates: readonly Candidate[]): boolean {
    const { queueDepthThreshold, kvCacheUtilThreshold } = this.options.config.saturation;
    return candidates.every((c) => c.metrics !== null && (c.metrics.waiting >= queueDepthThreshold || c.metrics.kvUsage >= kvCacheUtilThreshold));
  }

  private reject(clientModel: string, targetModel: string, status: number, code: string, message: string, headers: Record<string, string> = {}): RouteOutcome {
    this.options.metrics?.errors.inc({ model_name: clientModel, target_model_name: targetModel, error_code: code });
    if (status >= 500) this.options.logger.warn({ model: clientModel, code, message }, 'request not routed');
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
    m.poolKvUtilization.set({ name }, mean((c) => c.metrics!.kvUsage));
    m.poolQueue.set({ name }, mean((c) => c.metrics!.waiting));
    m.poolRunning.set({ name }, mean((c) => c.metrics!.running));
    m.perPodQueue.reset();
    for (const c of withMetrics) m.perPodQueue.set({ name, model_server_pod: c.endpoint.name }, c.metrics!.waiting);
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

  constructor(
    private readonly director: RequestDirector,
    private readonly request: SchedulingRequest,
    readonly result: SchedulingResult,
    info: { clientModel: string; targetModel: string; body: Buffer | null; bodyChanged: boolean; stream: boolean; received: number },
  ) {
    this.id = request.id;
    this.endpoints = result.endpoints;
    this.clientModel = info.clientModel;
    this.targetModel = info.targetModel;
    this.body = info.body;
    this.bodyChanged = info.bodyChanged;
    this.stream = info.stream;
    this.received = info.received;
    const { registry, metrics } = director.hooks();
    // Counted against the choice at once, so a burst sees it before the response starts.
    registry.acquire(this.endpoints[0]!.id);
    metrics?.running.inc({ model_name: this.clientModel });
  }

  /** The comma-separated ordered list proxies take (x-gateway-destination-endpoint). */
  get destinationHeader(): string {
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
    const labels = { model_name: this.clientModel, target_model_name: this.targetModel };
    this.responseBody = new ResponseStream({
      rewrite: this.clientModel !== this.targetModel ? { from: this.targetModel, to: this.clientModel } : null,
      sse: this.stream || (contentType ?? '').includes('text/event-stream'),
      onFirstBytes: () => metrics?.ttft.observe(labels, (performance.now() - this.received) / 1000),
      onFirstToken: () => scheduler.responseFirstToken(this.request, this.servedBy ?? this.endpoints[0]!),
      onUsage: (u) => {
        this.completionTokens = u.completionTokens;
        metrics?.inputTokens.observe(labels, u.promptTokens);
        metrics?.outputTokens.observe(labels, u.completionTokens);
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
    metrics?.running.dec({ model_name: this.clientModel });
    const streamed = this.responseBody?.sse ?? false;
    scheduler.responseComplete(this.request, {
      servedBy: this.servedBy ?? this.endpoints[0]!,
      status: outcome.status,
      error: outcome.error ?? null,
      streamed,
      completionTokens: this.completionTokens ?? (streamed ? (this.responseBody?.tokenChunks ?? null) : null),
    });
    const labels = { model_name: this.clientModel, target_model_name: this.targetModel };
    metrics?.duration.observe(labels, (performance.now() - this.received) / 1000);
    if (outcome.error !== undefined || (outcome.status !== null && outcome.status >= 500)) {
      metrics?.errors.inc({ ...labels, error_code: outcome.error ?? `HTTP_${outcome.status}` });
    }
  }
}
