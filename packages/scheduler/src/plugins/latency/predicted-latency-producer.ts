import type { LatencyPredictor, PredictionRow, TrainingEntry } from '@kvix/latency-predictor';
import type { Logger } from 'pino';
import type { Candidate, CompletedResponse, Endpoint, PreRequestHook, ProducerPlugin, ResponseHooks, SchedulingRequest, SchedulingResult } from '../../types.js';
import { PREFIX_MATCH, type PrefixMatch } from '../prefix-match.js';
import { LATENCY_CYCLE, latencyCycle, sloHeader, TPOT_SLO_HEADERS, TTFT_SLO_HEADERS, type EndpointLatency, type LatencyCycle } from './cycle.js';
import { InFlightTokens } from './inflight-tokens.js';
import type { LatencyRoutingMetrics } from './metrics.js';

export interface PredictedLatencyOptions {
  /** Predict for requests without an SLO header too (llm-d does; kvix by default spends nothing on them). */
  predictWithoutSlo: boolean;
  /** TPOT SLOs are multiplied by this before comparing (llm-d's sloBufferFactor). */
  sloBufferFactor: number;
  /**
   * Unset (kvix): streamed responses train TTFT (first chunk with text) and TPOT, others nothing.
   * false (llm-d's default): non-streamed responses also train, their end-to-end time as TTFT.
   */
  streamingMode: boolean | undefined;
  /** Endpoint label naming its role (prefill/decode) for the pod_type feature; '' = monolithic. */
  endpointRoleLabel: string;
  /** false: only collect training data (llm-d's predictInProduce). */
  predictInProduce: boolean;
  /** A request whose response never ends is forgotten after this long. */
  contextTtlMs: number;
}

interface RequestContext {
  key: string;
  pod: string;
  row: PredictionRow;
  predicted: EndpointLatency | null;
  ttftSloMs: number;
  tpotSloMs: number;
  model: string;
  dispatchedAt: number;
  firstTokenAt: number | null;
}

/**
 * llm-d's predicted-latency producer: before filters, one bulk prediction of TTFT and TPOT per
 * candidate from live features (the pod's scraped KV utilisation and queue, this router's
 * in-flight tokens there, and the prefix share the index says the pod holds), compared with the
 * request's SLO headers into per-pod headroom that the tier filter, the latency scorer and the
 * SLO admitter read. After dispatch it tracks the request's tokens on its pod, and when the
 * response comes back it turns the observed TTFT (first chunk with text) and TPOT (the rest) into
 * training entries, so the model learns, among other things, how cache hits shorten TTFT.
 */
export class PredictedLatencyProducer implements ProducerPlugin, PreRequestHook, ResponseHooks {
  readonly kind = 'producer';
  readonly type = 'predicted-latency-producer';
  readonly producerStage = 10;
  readonly inFlight: InFlightTokens;
  private readonly contexts = new Map<string, RequestContext>();
  private readonly keys = new WeakMap<SchedulingRequest, string>();
  private nextKey = 0;
  private readonly sweeper: NodeJS.Timeout;
  private readonly logged = new Set<string>();

  constructor(
    readonly name: string,
    private readonly predictor: LatencyPredictor,
    private readonly options: PredictedLatencyOptions,
    private readonly deps: { logger: Logger; metrics: LatencyRoutingMetrics | null; inFlightTokens?: InFlightTokens },
  ) {
    // Given by the service when replicas share their token load; otherwise this plugin's own.
    this.inFlight = deps.inFlightTokens ?? new InFlightTokens();
    this.sweeper = setInterval(() => this.sweep(), Math.min(60_000, options.contextTtlMs));
    this.sweeper.unref();
  }

  async produce(request: SchedulingRequest, candidates: readonly Candidate[]): Promise<void> {
    const ttftSloMs = sloHeader(request.headers, TTFT_SLO_HEADERS);
    const tpotSloMs = sloHeader(request.headers, TPOT_SLO_HEADERS);
    const match = request.cycle.get(PREFIX_MATCH) as PrefixMatch | undefined;
    const inputTokens = match?.promptTokens ?? estimatePromptTokens(request);
    const rows = new Map<string, PredictionRow>();
    for (const c of candidates) rows.set(c.endpoint.id, this.row(c, inputTokens, match));
    const cycle: LatencyCycle = { ttftSloMs, tpotSloMs, status: 'skipped', predictions: new Map(), rows };
    request.cycle.set(LATENCY_CYCLE, cycle);
    const hasSlo = ttftSloMs > 0 || tpotSloMs > 0;
    if (!this.options.predictInProduce || (!hasSlo && !this.options.predictWithoutSlo) || candidates.length === 0) {
      this.deps.metrics?.outcomes.inc({ outcome: 'skipped', source: 'none' });
      return;
    }
    const started = performance.now();
    try {
      const batch = await this.predictor.predict([...rows.values()]);
      this.deps.metrics?.predictionDuration.observe(this.labels(request.model), (performance.now() - started) / 1000);
      candidates.forEach((c, i) => {
        const p = batch.predictions[i]!;
        cycle.predictions.set(c.endpoint.id, this.headroom(c, p.ttftMs, p.tpotMs, ttftSloMs, tpotSloMs));
      });
      cycle.status = 'predicted';
      this.deps.metrics?.outcomes.inc({ outcome: 'predicted', source: batch.source });
    } catch (err) {
      cycle.status = 'unavailable';
      this.deps.metrics?.outcomes.inc({ outcome: 'unavailable', source: 'none' });
      const code = String((err as { code?: unknown }).code ?? 'ERROR');
      if (!this.logged.has(code) && this.logged.size < 20) {
        this.logged.add(code);
        this.deps.logger.warn({ plugin: this.name, code, err: (err as Error).message }, 'no latency predictions; SLO requests are routed on the other scorers (composite fallback)');
      }
    }
  }

  preRequest(request: SchedulingRequest, result: SchedulingResult): void {
    const chosen = result.endpoints[0];
    const cycle = latencyCycle(request);
    const row = chosen ? cycle?.rows.get(chosen.id) : undefined;
    if (!chosen || !cycle || !row) return;
    const key = String(this.nextKey++);
    this.keys.set(request, key);
    const predicted = cycle.predictions.get(chosen.id) ?? null;
    this.contexts.set(key, { key, pod: chosen.id, row, predicted, ttftSloMs: cycle.ttftSloMs, tpotSloMs: cycle.tpotSloMs, model: request.model, dispatchedAt: performance.now(), firstTokenAt: null });
    this.inFlight.dispatch(key, chosen.id, row.input_token_length * (1 - row.prefix_cache_score), row.input_token_length, cycle.tpotSloMs);
    if (predicted && this.deps.metrics) {
      this.deps.metrics.predictedTtft.observe(this.labels(request.model), predicted.ttftMs / 1000);
      if (predicted.tpotMs > 0) this.deps.metrics.predictedTpot.observe(this.labels(request.model), predicted.tpotMs / 1000);
    }
  }

  responseFirstToken(request: SchedulingRequest, servedBy: Endpoint): void {
    const ctx = this.context(request);
    if (!ctx || ctx.firstTokenAt !== null) return;
    ctx.firstTokenAt = performance.now();
    this.inFlight.firstToken(ctx.key);
    // Features describe the pod the request was routed to; a fallback's latency would teach it wrong.
    if (servedBy.id === ctx.pod) this.learnTtft(ctx, ctx.firstTokenAt - ctx.dispatchedAt);
  }

  responseComplete(request: SchedulingRequest, response: CompletedResponse): void {
    const ctx = this.context(request);
    if (!ctx) return;
    this.contexts.delete(ctx.key);
    this.inFlight.finish(ctx.key);
    if (response.error !== null || response.status === null || response.status >= 400 || response.servedBy.id !== ctx.pod) return;
    const now = performance.now();
    if (ctx.firstTokenAt === null) {
      if (!response.streamed && this.options.streamingMode === false) this.learnTtft(ctx, now - ctx.dispatchedAt);
      return;
    }
    const tokens = response.completionTokens ?? 0;
    if (tokens < 2) return;
    const tpot = (now - ctx.firstTokenAt) / (tokens - 1);
    this.train({ ...ctx.row, num_tokens_generated: 0, actual_ttft_ms: 0, actual_tpot_ms: tpot, timestamp: new Date().toISOString() }, 'tpot');
    this.deps.metrics?.observed.set({ ...this.labels(ctx.model), type: 'tpot' }, tpot / 1000);
    if (ctx.tpotSloMs > 0 && tpot > ctx.tpotSloMs) this.deps.metrics?.sloViolations.inc({ ...this.labels(ctx.model), type: 'tpot' });
  }

  /** Requests dispatched and not finished (for tests and debugging). */
  get tracked(): number {
    return this.contexts.size;
  }

  /** The predictor belongs to whoever supplied it; it is not closed here. */
  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }

  private learnTtft(ctx: RequestContext, ttftMs: number): void {
    this.train({ ...ctx.row, num_tokens_generated: 0, actual_ttft_ms: ttftMs, actual_tpot_ms: 0, timestamp: new Date().toISOString() }, 'ttft');
    this.deps.metrics?.observed.set({ ...this.labels(ctx.model), type: 'ttft' }, ttftMs / 1000);
    if (ctx.predicted && ttftMs > 0) this.deps.metrics?.ttftErrorRatio.observe(Math.abs(ctx.predicted.ttftMs - ttftMs) / ttftMs);
    if (ctx.ttftSloMs > 0 && ttftMs > ctx.ttftSloMs) this.deps.metrics?.sloViolations.inc({ ...this.labels(ctx.model), type: 'ttft' });
  }

  private train(entry: TrainingEntry, kind: 'ttft' | 'tpot'): void {
    this.predictor.train([entry]);
    this.deps.metrics?.trainingEntries.inc({ kind });
  }

  private context(request: SchedulingRequest): RequestContext | undefined {
    const key = this.keys.get(request);
    return key === undefined ? undefined : this.contexts.get(key);
  }

  private row(c: Candidate, inputTokens: number, match: PrefixMatch | undefined): PredictionRow {
    const m = c.metrics;
    const waiting = m?.waiting ?? 0;
    const matched = match?.matchedBlocks?.get(c.endpoint.id) ?? 0;
    const total = match?.totalBlocks ?? 0;
    const role = this.options.endpointRoleLabel;
    return {
      kv_cache_percentage: clamp01(m?.kvUsage ?? 0),
      input_token_length: inputTokens,
      num_request_waiting: Math.max(0, Math.round(waiting)),
      // The router's own count sees a burst before the next scrape does.
      num_request_running: Math.max(0, Math.round(Math.max(m?.running ?? 0, c.inFlight - waiting))),
      num_tokens_generated: 1,
      prefix_cache_score: total > 0 ? clamp01(matched / total) : 0,
      pod_type: role !== '' ? (c.endpoint.labels[role] ?? '') : '',
      prefill_tokens_in_flight: Math.max(0, this.inFlight.prefillTokens(c.endpoint.id)),
      decode_tokens_in_flight: Math.max(0, this.inFlight.decodeTokens(c.endpoint.id)),
      encoder_input_size: 0,
      encoder_matched_size: 0,
    };
  }

  /** llm-d's validation: TTFT against its SLO; TPOT (when the request has a TPOT SLO) against the tightest one running there. */
  private headroom(c: Candidate, ttftMs: number, tpotMs: number, ttftSloMs: number, tpotSloMs: number): EndpointLatency {
    const ttftHeadroom = ttftSloMs - ttftMs;
    // Without a TTFT SLO, TTFT does not decide validity; its (negative) headroom still orders pods.
    const ttftValid = ttftSloMs > 0 ? ttftMs < ttftSloMs : true;
    let tpotValid = true;
    let tpotHeadroom = 0;
    if (tpotSloMs > 0) {
      let budget = tpotSloMs * this.options.sloBufferFactor;
      const podMin = this.inFlight.minTpotSlo(c.endpoint.id);
      if (podMin > 0) budget = Math.min(budget, podMin * this.options.sloBufferFactor);
      tpotValid = tpotMs < budget;
      tpotHeadroom = budget - tpotMs;
    }
    return { ttftMs, tpotMs, ttftHeadroom, tpotHeadroom, ttftValid, tpotValid, dispatched: c.inFlight };
  }

  private labels(model: string): { plugin_name: string; plugin_type: string; model_name: string; target_model_name: string } {
    return { plugin_name: this.name, plugin_type: this.type, model_name: model, target_model_name: model };
  }

  private sweep(): void {
    const before = performance.now() - this.options.contextTtlMs;
    for (const ctx of this.contexts.values()) {
      if (ctx.dispatchedAt >= before) continue;
      this.contexts.delete(ctx.key);
      this.inFlight.finish(ctx.key);
    }
  }
}

function clamp01(v: number): number {
  return Number.isFinite(v) ? Math.min(1, Math.max(0, v)) : 0;
}

/** Without a tokenizer's count (no precise prefix scorer, or it failed): ~4 characters a token. */
export function estimatePromptTokens(request: SchedulingRequest): number {
  const p = request.prompt?.prompt;
  if (!p) return 0;
  if (p.kind === 'tokens') return p.tokenIds.length;
  if (p.kind === 'completion') return Math.ceil(p.prompt.length / 4);
  let chars = 0;
  for (const m of p.messages) chars += typeof m.content === 'string' ? m.content.length : JSON.stringify(m.content ?? '').length;
  return Math.ceil(chars / 4);
}
