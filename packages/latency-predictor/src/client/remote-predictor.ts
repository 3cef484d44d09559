import { readTokenFile } from '@kvix/service-kit';
import type { Logger } from 'pino';
import type { LatencyPredictorConfig } from '../config.js';
import { PredictorError, type PredictorErrorCode } from '../errors.js';
import type { PredictorMetrics } from '../metrics.js';
import type { LatencyPredictor, Prediction, PredictionBatch, PredictorDescription } from '../predictor.js';
import type { BulkPredictionResponse, ModelInfoResponse, PredictionRow, StatusResponse, TrainingEntry } from '../wire.js';
import { CircuitBreaker } from './circuit-breaker.js';
import { Coalescer } from './coalescer.js';
import { parseModelMetrics, type ModelSnapshot } from './snapshot.js';

export interface RemotePredictorDeps {
  logger: Logger;
  metrics?: PredictorMetrics | null;
  random?: () => number;
}

/** Entries held while the training server is unreachable, in flushes' worth. */
const BUFFERED_FLUSHES = 10;

/** HTTP statuses worth another attempt (the server is overloaded or restarting, not the request wrong). */
const RETRYABLE_STATUS = new Set([429, 502, 503, 504]);

interface Target {
  url: string;
  breaker: CircuitBreaker;
}

/**
 * llm-d's latency predictor over HTTP, as its Go client uses it: concurrent routing decisions are
 * coalesced into `/predict/bulk/strict` calls (1 ms window, `maxBatchRows`), each call spread over
 * the prediction servers with a per-attempt timeout, a retry on another server, and a circuit
 * breaker per server; training entries are buffered and sent to `/add_training_data_bulk` every
 * `flushIntervalMs` (202 expected; a failed flush is kept for the next one, bounded); the model
 * snapshot (`/status`, `/model/download/info`, `/metrics`) is refreshed every
 * `refreshIntervalMs`.
 */
export class RemotePredictor implements LatencyPredictor {
  private readonly targets: Target[];
  private readonly trainingUrl: string;
  private readonly coalescer: Coalescer<PredictionRow, Prediction>;
  private buffer: TrainingEntry[] = [];
  private flushTimer: NodeJS.Timeout | null = null;
  private refreshTimer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private snapshot: ModelSnapshot | null = null;
  private readonly random: () => number;
  private closed = false;
  private readonly logged = new Set<string>();

  /** Sent with every call: the servers' bearer token, when configured. */
  private readonly auth: Record<string, string>;

  constructor(
    private readonly config: LatencyPredictorConfig,
    private readonly deps: RemotePredictorDeps,
  ) {
    this.auth = config.authTokenFile === undefined ? {} : { authorization: `Bearer ${readTokenFile(config.authTokenFile)}` };
    const urls = config.predictionUrls.length > 0 ? config.predictionUrls : config.trainingUrl ? [config.trainingUrl] : [];
    if (urls.length === 0) throw new PredictorError('UNREACHABLE', 'a remote latency predictor needs at least one prediction or training URL');
    this.targets = urls.map((url) => ({
      url,
      breaker: new CircuitBreaker(config.circuitBreaker, (state) => {
        deps.metrics?.circuitOpen.set({ url }, state === 'open' ? 1 : 0);
        const level = state === 'open' ? 'warn' : 'info';
        deps.logger[level]({ url, state }, state === 'open' ? 'prediction server keeps failing; circuit open, predictions fall back' : `prediction server circuit ${state}`);
      }),
    }));
    this.trainingUrl = config.trainingUrl ?? urls[0]!;
    this.random = deps.random ?? Math.random;
    this.coalescer = new Coalescer({ windowMs: config.coalesceWindowMs, maxRows: config.maxBatchRows, maxConcurrent: config.maxConcurrentCalls }, (rows, callers) => this.callWithRetries(rows, callers));
  }

  /** Starts the flush and refresh timers and takes a first snapshot (failures are only logged). */
  async start(): Promise<void> {
    this.flushTimer = setInterval(() => void this.flush(), this.config.flushIntervalMs);
    this.flushTimer.unref();
    this.refreshTimer = setInterval(() => void this.refresh(), this.config.refreshIntervalMs);
    this.refreshTimer.unref();
    await this.refresh();
  }

  predict(rows: readonly PredictionRow[]): Promise<PredictionBatch> {
    if (this.closed) return Promise.reject(new PredictorError('CLOSED', 'the latency predictor is closed'));
    if (rows.length === 0) return Promise.resolve({ predictions: [], source: 'remote' });
    // Refused at once when every circuit is open: no window to wait, no timeout to pay.
    if (!this.targets.some((t) => t.breaker.wouldAllow())) {
      return Promise.reject(new PredictorError('CIRCUIT_OPEN', 'every prediction server failed repeatedly; not trying until the cooldown ends'));
    }
    return this.coalescer.submit(rows).then((predictions) => ({ predictions, source: 'remote' as const }));
  }

  /** The servers learn from what each process sends them; nothing of a peer's is sent twice. */
  learnFromPeers(_entries: readonly TrainingEntry[]): void {}

  train(entries: readonly TrainingEntry[]): void {
    if (this.closed || entries.length === 0) return;
    const limit = this.config.maxSampleSize * BUFFERED_FLUSHES;
    const stamp = new Date().toISOString();
    for (const e of entries) this.buffer.push(e.timestamp ? e : { ...e, timestamp: stamp });
    if (this.buffer.length > limit) {
      const dropped = this.buffer.length - limit;
      this.buffer.splice(0, dropped);
      this.deps.metrics?.trainingEntries.inc({ outcome: 'dropped' }, dropped);
    }
  }

  /** Sends buffered training entries now (the timer does this every flushIntervalMs). */
  flush(): Promise<void> {
    this.flushing ??= this.flushOnce().finally(() => (this.flushing = null));
    return this.flushing;
  }

  describe(): PredictorDescription {
    return {
      kind: 'remote',
      ready: this.snapshot?.ready ?? false,
      modelType: this.snapshot?.modelType ?? 'unknown',
      objective: this.snapshot?.objectiveType === 'mean' ? 'mean' : 'quantile',
      quantile: this.snapshot?.quantile ?? 0.9,
      samples: null,
      remote: {
        predictionUrls: this.targets.map((t) => ({ url: t.url, circuit: t.breaker.state })),
        trainingUrl: this.trainingUrl,
        bufferedTrainingEntries: this.buffer.length,
        snapshot: this.snapshot,
      },
    };
  }

  /** The last model snapshot, null before the first successful refresh. */
  get modelSnapshot(): ModelSnapshot | null {
    return this.snapshot;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.flushTimer) clearInterval(this.flushTimer);
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    this.coalescer.close(new PredictorError('CLOSED', 'the latency predictor is closed'));
    // What was learned until now still reaches the training server.
    await this.flushing;
    await this.flushOnce();
  }

  private pickTarget(exclude: ReadonlySet<Target>): Target | null {
    const n = this.targets.length;
    // Spread over the servers at random (llm-d's client does the same).
    const start = n === 1 ? 0 : Math.floor(this.random() * n);
    for (let i = 0; i < n; i++) {
      const t = this.targets[(start + i) % n]!;
      if (!exclude.has(t) && t.breaker.allow()) return t;
    }
    return null;
  }

  private async callWithRetries(rows: PredictionRow[], callers: number): Promise<Prediction[]> {
    this.deps.metrics?.callersPerCall.observe(callers);
    const tried = new Set<Target>();
    let last: PredictorError | null = null;
    for (let attempt = 0; attempt <= this.config.retries; attempt++) {
      // A retry prefers another server; with one server it goes back to the same.
      const target = this.pickTarget(tried) ?? (tried.size > 0 && this.targets.length === 1 ? this.pickTarget(new Set()) : null);
      if (target === null) break;
      tried.add(target);
      try {
        const out = await this.callOnce(target, rows);
        target.breaker.success();
        return out;
      } catch (err) {
        last = err instanceof PredictorError ? err : new PredictorError('BAD_RESPONSE', (err as Error).message, { cause: err });
        // A 4xx (but 429) is this request's fault, not the server's health: no retry, no strike.
        const status = (last as PredictorError & { status?: number }).status;
        const serverFault = last.code !== 'HTTP_STATUS' || status === undefined || status >= 500 || RETRYABLE_STATUS.has(status);
        if (serverFault) target.breaker.failure();
        else target.breaker.success();
        this.logOnce(last.code, { url: target.url, err: last.message }, 'latency prediction call failed');
        if (!serverFault) break;
      }
    }
    throw last ?? new PredictorError('CIRCUIT_OPEN', 'every prediction server failed repeatedly; not trying until the cooldown ends');
  }

  private async callOnce(target: Target, rows: PredictionRow[]): Promise<Prediction[]> {
    const started = performance.now();
    let outcome: string = 'ok';
    try {
      const res = await this.http(`${target.url}/predict/bulk/strict`, { method: 'POST', body: JSON.stringify({ requests: rows }) });
      if (res.status !== 200) {
        const text = await res.text().catch(() => '');
        outcome = 'http_status';
        throw Object.assign(new PredictorError('HTTP_STATUS', `${target.url} answered ${res.status}: ${text.slice(0, 200)}`), { status: res.status });
      }
      const body = (await res.json().catch(() => null)) as BulkPredictionResponse | null;
      const predictions = body?.predictions;
      if (!Array.isArray(predictions) || predictions.length !== rows.length) {
        outcome = 'bad_response';
        throw new PredictorError('BAD_RESPONSE', `${target.url} answered ${Array.isArray(predictions) ? predictions.length : 'no'} predictions for ${rows.length} rows`);
      }
      return predictions.map((p, i) => {
        if (typeof p?.ttft_ms !== 'number' || typeof p.tpot_ms !== 'number') {
          outcome = 'bad_response';
          throw new PredictorError('BAD_RESPONSE', `${target.url}: prediction ${i} has no numeric ttft_ms/tpot_ms`);
        }
        return { ttftMs: p.ttft_ms, tpotMs: p.tpot_ms };
      });
    } catch (err) {
      if (err instanceof PredictorError) throw err;
      const e = err as Error & { cause?: { code?: string } };
      if (e.name === 'TimeoutError' || e.name === 'AbortError') {
        outcome = 'timeout';
        throw new PredictorError('TIMEOUT', `${target.url} did not answer within ${this.config.timeoutMs} ms`, { cause: err });
      }
      outcome = 'unreachable';
      throw new PredictorError('UNREACHABLE', `${target.url}: ${e.cause?.code ?? e.message}`, { cause: err });
    } finally {
      this.deps.metrics?.calls.inc({ outcome });
      this.deps.metrics?.callDuration.observe((performance.now() - started) / 1000);
    }
  }

  private http(url: string, init: { method: string; body?: string }): Promise<Response> {
    return fetch(url, { ...init, headers: { ...this.auth, ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}) }, signal: AbortSignal.timeout(this.config.timeoutMs) });
  }

  private async flushOnce(): Promise<void> {
    if (this.buffer.length === 0) return;
    const all = this.buffer;
    this.buffer = [];
    const batch = all.length > this.config.maxSampleSize ? stratifiedSample(all, this.config.maxSampleSize, this.random) : all;
    if (batch.length < all.length) this.deps.metrics?.trainingEntries.inc({ outcome: 'sampled_out' }, all.length - batch.length);
    try {
      // Training is not on any request's path: it gets a more generous budget than predictions.
      const res = await fetch(`${this.trainingUrl}/add_training_data_bulk`, {
        method: 'POST',
        headers: { ...this.auth, 'content-type': 'application/json' },
        body: JSON.stringify({ entries: batch }),
        signal: AbortSignal.timeout(Math.max(1000, this.config.timeoutMs * 4)),
      });
      await res.arrayBuffer().catch(() => undefined);
      if (res.status !== 202 && res.status !== 200) {
        // A rejected batch (422) would be rejected again: drop it; a server error may pass later.
        if (res.status >= 500) this.requeue(batch);
        else this.deps.metrics?.trainingEntries.inc({ outcome: 'dropped' }, batch.length);
        this.logOnce(`train-${res.status}`, { url: this.trainingUrl, status: res.status }, 'training server refused a batch of training entries');
        return;
      }
      this.deps.metrics?.trainingEntries.inc({ outcome: 'sent' }, batch.length);
    } catch (err) {
      this.requeue(batch);
      this.logOnce('train-unreachable', { url: this.trainingUrl, err: (err as Error).message }, 'training server unreachable; entries kept for the next flush');
    }
  }

  /** A failed batch goes back in front of newer entries, within the buffer's bound. */
  private requeue(batch: TrainingEntry[]): void {
    const limit = this.config.maxSampleSize * BUFFERED_FLUSHES;
    const merged = [...batch, ...this.buffer];
    const dropped = Math.max(0, merged.length - limit);
    this.buffer = dropped > 0 ? merged.slice(dropped) : merged;
    if (dropped > 0) this.deps.metrics?.trainingEntries.inc({ outcome: 'dropped' }, dropped);
  }

  /** Refreshes the model snapshot: status from a prediction server, model info and metrics from the training server. */
  async refresh(): Promise<void> {
    const target = this.targets[Math.floor(this.random() * this.targets.length)]!;
    const get = async <T>(url: string, as: 'json' | 'text'): Promise<T | null> => {
      try {
        const res = await fetch(url, { headers: this.auth, signal: AbortSignal.timeout(Math.max(1000, this.config.timeoutMs * 4)) });
        if (res.status !== 200) {
          await res.arrayBuffer().catch(() => undefined);
          return null;
        }
        return (as === 'json' ? await res.json() : await res.text()) as T;
      } catch {
        return null;
      }
    };
    const [status, info, metrics] = await Promise.all([
      get<StatusResponse>(`${target.url}/status`, 'json'),
      get<ModelInfoResponse>(`${this.trainingUrl}/model/download/info`, 'json'),
      get<string>(`${this.trainingUrl}/metrics`, 'text'),
    ]);
    if (status === null && info === null && metrics === null) {
      this.logOnce('refresh', { url: target.url, trainingUrl: this.trainingUrl }, 'could not refresh the latency model snapshot (will retry)');
      return;
    }
    const parsed = metrics !== null ? parseModelMetrics(metrics) : null;
    const previous = this.snapshot;
    this.snapshot = {
      modelType: status?.model_type ?? info?.model_type ?? parsed?.modelType ?? null,
      objectiveType: status?.objective_type ?? info?.objective_type ?? parsed?.objectiveType ?? null,
      quantile: status?.quantile ?? info?.quantile ?? parsed?.quantile ?? null,
      ready: status?.is_ready ?? null,
      coefficients: parsed?.coefficients ?? null,
      trainingSamples: parsed?.trainingSamples ?? null,
      refreshedAt: new Date().toISOString(),
    };
    if (previous?.modelType !== this.snapshot.modelType || previous?.ready !== this.snapshot.ready) {
      this.deps.logger.info({ modelType: this.snapshot.modelType, ready: this.snapshot.ready, objective: this.snapshot.objectiveType, quantile: this.snapshot.quantile }, 'latency model snapshot');
    }
  }

  private logOnce(key: string, fields: Record<string, unknown>, message: string): void {
    if (this.logged.has(key) || this.logged.size > 100) return;
    this.logged.add(key);
    this.deps.logger.warn(fields, message);
  }
}

/** Keeps the TTFT/TPOT mix of the batch (llm-d samples the same way). */
export function stratifiedSample(entries: readonly TrainingEntry[], size: number, random: () => number): TrainingEntry[] {
  const ttft = entries.filter((e) => e.actual_ttft_ms > 0);
  const rest = entries.filter((e) => !(e.actual_ttft_ms > 0));
  const ttftShare = Math.round((ttft.length / entries.length) * size);
  return [...sample(ttft, Math.min(ttft.length, ttftShare), random), ...sample(rest, Math.min(rest.length, size - ttftShare), random)];
}

function sample<T>(items: readonly T[], n: number, random: () => number): T[] {
  const copy = [...items];
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(random() * (copy.length - i));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy.slice(0, n);
}

export type { PredictorErrorCode };
