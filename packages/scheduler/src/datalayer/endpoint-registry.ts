import type { PodTarget } from '@kvix/kv-ingest';
import type { Logger } from 'pino';
import type { Candidate, Endpoint, EndpointMetrics } from '../types.js';
import { MetricsClient } from './metrics-client.js';
import { parseEndpointMetrics } from './parse-metrics.js';

export interface RegistryOptions {
  /** How often each endpoint's /metrics is read. */
  scrapeIntervalMs: number;
  scrapeTimeoutMs: number;
  /** A larger /metrics answer fails the scrape (a poll error). Default 8 MiB. */
  maxMetricsBytes?: number;
  /** A scrape failed to fetch (poll) or held no load metrics (extract): llm-d's data-layer error counters. */
  onScrapeError?: (kind: 'poll' | 'extract') => void;
  /** Metrics older than this are ignored (the scorers see no metrics rather than stale ones). */
  staleAfterMs: number;
  scheme: 'http' | 'https';
  path: string;
  /** Discovery label that marks an endpoint draining (it takes no new requests). */
  drainingLabel: string;
  logger: Logger;
  now?: () => number;
  /**
   * `scrape` (default): this registry reads every endpoint's /metrics. `external`: it never does;
   * another process scrapes and hands each outcome to `recordScrape` — one scrape of each pod for
   * all of an EPP's routing workers, rather than one per worker.
   */
  metricsSource?: 'scrape' | 'external';
  /** Every scrape this registry made, as it recorded it (what a scraping primary relays to its workers). */
  onScraped?: (id: string, outcome: ScrapeOutcome) => void;
}

/** One scrape of an endpoint's /metrics: its load, or why there is none. */
export type ScrapeOutcome =
  | { metrics: EndpointMetrics }
  /** `timeout`: the answer was slow, which takes the endpoint out only once its last metrics are stale. */
  | { failure: string; timeout: boolean };

interface EndpointState {
  endpoint: Endpoint;
  metrics: EndpointMetrics | null;
  inFlight: number;
  /** False after a refused connection or failed scrape, until a scrape succeeds. */
  healthy: boolean;
  reason: string | null;
  scraping: boolean;
}

export interface EndpointStatus {
  id: string;
  name: string;
  model: string | null;
  healthy: boolean;
  draining: boolean;
  reason: string | null;
  /** This router's own in-flight requests to the endpoint. */
  inFlight: number;
  /** What other router replicas report in flight to it (active-active HA; 0 alone). */
  peerInFlight: number;
  metrics: EndpointMetrics | null;
}

/**
 * The endpoints a router may pick from: discovery's list, each endpoint's load scraped from its
 * /metrics, and this router's own in-flight counts. An endpoint that refuses connections or fails
 * a scrape leaves the candidate set at once and returns on the next successful scrape.
 */
export class EndpointRegistry {
  private readonly states = new Map<string, EndpointState>();
  private timer: NodeJS.Timeout | null = null;
  private readonly now: () => number;
  private readonly listeners = new Set<() => void>();
  private readonly inFlightListeners = new Set<(id: string, inFlight: number) => void>();
  private peerInFlight: (id: string) => number = () => 0;
  private readonly client: MetricsClient;
  /** Bumped by stop(), which closes the scrape sockets: a scrape begun before it fails for that, not for the pod. */
  private epoch = 0;

  constructor(private readonly options: RegistryOptions) {
    this.now = options.now ?? Date.now;
    this.client = new MetricsClient({ scheme: options.scheme, timeoutMs: options.scrapeTimeoutMs, ...(options.maxMetricsBytes !== undefined ? { maxBodyBytes: options.maxMetricsBytes } : {}) });
  }

  /** Replaces the endpoint list (a discovery snapshot). Endpoints that stay keep their state. */
  setTargets(targets: readonly PodTarget[]): void {
    const next = new Set(targets.map((t) => t.id));
    for (const id of this.states.keys()) {
      if (!next.has(id)) {
        this.states.delete(id);
        this.options.logger.info({ endpoint: id }, 'endpoint removed');
      }
    }
    for (const t of targets) {
      const endpoint: Endpoint = { id: t.id, address: t.address, port: t.port, name: t.name, model: t.model, labels: { ...(t.labels ?? {}) }, ...(t.adapters ? { adapters: t.adapters } : {}) };
      const state = this.states.get(t.id);
      if (state) state.endpoint = endpoint;
      else {
        this.states.set(t.id, { endpoint, metrics: null, inFlight: 0, healthy: true, reason: null, scraping: false });
        this.options.logger.info({ endpoint: t.id, name: t.name, model: t.model }, 'endpoint added');
        if (this.options.metricsSource !== 'external') void this.scrape(this.states.get(t.id)!);
      }
    }
    for (const l of this.listeners) l();
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  start(): void {
    if (this.timer || this.options.metricsSource === 'external') return;
    this.timer = setInterval(() => {
      for (const s of this.states.values()) void this.scrape(s);
    }, this.options.scrapeIntervalMs);
    this.timer.unref();
  }

  /** Stops scraping and closes the scrape connections (start() opens new ones). */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.epoch++;
    this.client.close();
  }

  get(id: string): Endpoint | undefined {
    return this.states.get(id)?.endpoint;
  }

  /** Endpoints that may take a new request: known, healthy, not draining; optionally only `subset`. */
  candidates(subset: ReadonlySet<string> | null = null): Candidate[] {
    const out: Candidate[] = [];
    const staleBefore = this.now() - this.options.staleAfterMs;
    for (const s of this.states.values()) {
      if (!s.healthy || this.isDraining(s.endpoint)) continue;
      if (subset !== null && !subset.has(s.endpoint.id)) continue;
      out.push({ endpoint: s.endpoint, metrics: s.metrics && s.metrics.scrapedAt >= staleBefore ? s.metrics : null, inFlight: s.inFlight + this.peerInFlight(s.endpoint.id) });
    }
    return out;
  }

  status(): EndpointStatus[] {
    return [...this.states.values()].map((s) => ({
      id: s.endpoint.id,
      name: s.endpoint.name,
      model: s.endpoint.model,
      healthy: s.healthy,
      draining: this.isDraining(s.endpoint),
      reason: s.reason,
      inFlight: s.inFlight,
      peerInFlight: this.peerInFlight(s.endpoint.id),
      metrics: s.metrics,
    }));
  }

  get size(): number {
    return this.states.size;
  }

  /** A proxy could not reach the endpoint: take it out now, rather than at the next scrape. */
  markDown(id: string, reason: string): void {
    const s = this.states.get(id);
    if (!s || !s.healthy) return;
    s.healthy = false;
    s.reason = reason;
    this.options.logger.warn({ endpoint: id, reason }, 'endpoint unreachable; out of the candidate set until it answers again');
    for (const l of this.listeners) l();
  }

  acquire(id: string): void {
    const s = this.states.get(id);
    if (!s) return;
    s.inFlight++;
    for (const l of this.inFlightListeners) l(id, s.inFlight);
  }

  release(id: string): void {
    const s = this.states.get(id);
    if (!s || s.inFlight === 0) return;
    s.inFlight--;
    for (const l of this.inFlightListeners) l(id, s.inFlight);
  }

  /**
   * Counts other router replicas have in flight, added to this router's own when scorers look at
   * load: without them, each of N active-active replicas sees 1/N of a burst.
   */
  setPeerInFlight(source: (id: string) => number): void {
    this.peerInFlight = source;
  }

  /** This router's own in-flight count per endpoint (what it reports to its peers). */
  ownInFlight(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [id, s] of this.states) if (s.inFlight > 0) out.set(id, s.inFlight);
    return out;
  }

  /** Called on every change of this router's own in-flight count. */
  onInFlightChange(listener: (id: string, inFlight: number) => void): () => void {
    this.inFlightListeners.add(listener);
    return () => this.inFlightListeners.delete(listener);
  }

  private isDraining(e: Endpoint): boolean {
    const v = e.labels[this.options.drainingLabel];
    return v !== undefined && v !== '' && v !== 'false';
  }

  /** A scrape another process made (metricsSource `external`); ignored for an endpoint this registry does not know. */
  recordScrape(id: string, outcome: ScrapeOutcome): void {
    const s = this.states.get(id);
    if (s) this.record(s, outcome);
  }

  private async scrape(s: EndpointState): Promise<void> {
    if (s.scraping) return;
    s.scraping = true;
    const epoch = this.epoch;
    try {
      const outcome = await this.read(s, epoch);
      // A scrape the registry dropped meanwhile (endpoint removed, or registry stopped) needs no bookkeeping.
      if (this.states.get(s.endpoint.id) !== s || epoch !== this.epoch) return;
      this.record(s, outcome);
      this.options.onScraped?.(s.endpoint.id, outcome);
    } finally {
      s.scraping = false;
    }
  }

  private async read(s: EndpointState, epoch: number): Promise<ScrapeOutcome> {
    let text: string;
    try {
      text = await this.client.get(s.endpoint.address, s.endpoint.port, this.options.path);
    } catch (err) {
      if (epoch === this.epoch) this.options.onScrapeError?.('poll');
      return { failure: describe(err), timeout: (err as Error).name === 'TimeoutError' };
    }
    let metrics: EndpointMetrics | null;
    try {
      metrics = parseEndpointMetrics(text, this.now());
    } catch (err) {
      // Not Prometheus text at all: no load could be read from it either.
      this.options.onScrapeError?.('extract');
      return { failure: `unreadable metrics: ${(err as Error).message}`, timeout: false };
    }
    if (metrics === null) {
      this.options.onScrapeError?.('extract');
      return { failure: 'no model-server load metrics in the answer', timeout: false };
    }
    return { metrics };
  }

  private record(s: EndpointState, outcome: ScrapeOutcome): void {
    if ('metrics' in outcome) {
      s.metrics = outcome.metrics;
      if (!s.healthy) {
        this.options.logger.info({ endpoint: s.endpoint.id }, 'endpoint answers again; back in the candidate set');
        s.healthy = true;
        s.reason = null;
        for (const l of this.listeners) l();
      }
      return;
    }
    // A slow answer is a busy pod (or a busy router on a loaded node), not a dead one: a timeout
    // takes it out only once its last good metrics are stale. Refused or reset: out at once.
    const recent = s.metrics !== null && s.metrics.scrapedAt >= this.now() - this.options.staleAfterMs;
    if (outcome.timeout && recent) return;
    this.markDown(s.endpoint.id, `metrics scrape failed: ${outcome.failure}`);
  }
}

function describe(err: unknown): string {
  const e = err as Error & { code?: unknown; cause?: { code?: string; message?: string } };
  if (e.name === 'TimeoutError') return 'timeout';
  // node:http puts a system error's code (ECONNREFUSED, ECONNRESET, ENOTFOUND, a TLS check's) on
  // the error itself; fetch (undici) wrapped it in a 'fetch failed' error's `cause`.
  if (typeof e.code === 'string') return e.code;
  return e.cause?.code ?? e.cause?.message ?? e.message;
}
