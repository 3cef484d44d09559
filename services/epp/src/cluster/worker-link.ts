import type { InMemoryIndex, PodEntry } from '@kvix/kv-index';
import type { DiscoverySource, PodTarget } from '@kvix/kv-ingest';
import type { PoolResourcesState } from '@kvix/kubernetes';
import type { LatencyPredictor, TrainingEntry } from '@kvix/latency-predictor';
import type { ScrapeOutcome } from '@kvix/scheduler';
import { applyIndexOps, type InFlightSource, type InFlightTokenSource, type SpeculationSink } from '@kvix/replication';
import type { Readiness } from '@kvix/service-kit';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { WorkerAnalytics } from './analytics-merge.js';
import { isPrimaryMessage, type MetricFamilyJson, type PrimaryMessage, type SpeculativeDecision, type TokensInFlight, type WorkerMessage, type WorkerStatus } from './messages.js';
import { sumCounts, sumTokens } from './load-sums.js';
import { TurnBatch } from './turn-batch.js';

/**
 * How long a worker gathers changes of its in-flight counts before telling the others: one message
 * per window at most (a burst of decisions is one message), against scrapes 50–100 ms apart.
 */
const LOAD_FLUSH_MS = 2;

const NO_TOKENS: TokensInFlight = { prefill: 0, decode: 0 };

/** What a worker answers the primary with: its readiness, its index copy, its metrics. */
export interface WorkerSurface {
  registry: Registry;
  readiness(): Readiness;
  pods(): Promise<WorkerStatus['pods']>;
  /** Its reuse analytics (with the embedded index): merged by the primary with the other workers'. */
  analytics?(prefixes: boolean): Promise<WorkerAnalytics>;
}

/**
 * A worker's end of the cluster IPC channel: it follows the primary's index (the snapshot, then
 * every operation the primary's ingestion applied, as an HA replica follows the index stream) and
 * its discovery (the pods, the InferencePool's resources: one watcher of the API, one writer of
 * the pool's status and Events, however many workers), shares its routing decisions' speculative
 * entries and its load with the other workers through the primary, and answers the primary's
 * status and metrics questions.
 */
export class PrimaryLink implements SpeculationSink {
  private index: InMemoryIndex | null = null;
  private surface: WorkerSurface | null = null;
  private appliedSeq = 0;
  /** Batches apply one after another, in the order they were sent. */
  private applying: Promise<void> = Promise.resolve();
  private fedResolve: (() => void) | null = null;
  private malformed = 0;
  /** Failures per kind (an answer to the primary, gathering analytics), each kind logged once per thousand. */
  private readonly failures = new Map<string, number>();
  private readonly onMessage = (m: unknown): void => this.receive(m);
  private debug: FastifyInstance | null = null;
  private readonly decisions = new TurnBatch<SpeculativeDecision>((decisions) => this.send({ kvix: 'speculation', decisions }));
  private load: InFlightSource | null = null;
  private tokens: InFlightTokenSource | null = null;
  private loadTimer: NodeJS.Timeout | null = null;
  private stopLoad: (() => void) | null = null;
  /** The other workers' in-flight counts by slot, and their sum per endpoint (what scorers read). */
  private readonly peerLoads = new Map<number, Record<string, number>>();
  private peerTotals = new Map<string, number>();
  private readonly peerTokenLoads = new Map<number, Record<string, TokensInFlight>>();
  private peerTokenTotals = new Map<string, TokensInFlight>();
  /** The discovery source's listener once its first snapshot arrived; until then, what completes its start. */
  private onTargets: ((targets: readonly PodTarget[]) => void) | null = null;
  private discovered: ((targets: readonly PodTarget[]) => void) | null = null;
  private poolResources: PoolResourcesState | null = null;
  private onPoolResources: ((resources: PoolResourcesState) => void) | null = null;
  /** Where the primary's scrapes go; until it is set, the latest outcome of each endpoint waits here. */
  private scrapeSink: ((id: string, outcome: ScrapeOutcome) => void) | null = null;
  private readonly earlyScrapes = new Map<string, ScrapeOutcome>();
  private predictor: LatencyPredictor | null = null;
  private readonly training = new TurnBatch<TrainingEntry>((entries) => this.send({ kvix: 'training', entries }));

  constructor(
    /** Named in the gateway's `x-kvix-worker` header and in logs. */
    readonly workerId: string,
    private readonly logger: Logger,
  ) {
    process.on('message', this.onMessage);
  }

  /** Loads the primary's index into `index` (empty) and keeps it following; resolves once loaded. */
  follow(index: InMemoryIndex): Promise<void> {
    this.index = index;
    const fed = new Promise<void>((resolve) => (this.fedResolve = resolve));
    this.send({ kvix: 'feed?' });
    return fed;
  }

  /**
   * Discovery for this worker: the primary's, relayed (its pod watcher, endpoints file or static
   * list runs once, in the primary). Starts when the first snapshot arrived, like any source.
   */
  discovery(): DiscoverySource {
    return {
      name: 'primary',
      start: (onSnapshot) =>
        new Promise<void>((resolve) => {
          this.discovered = (targets) => {
            this.discovered = null;
            this.onTargets = onSnapshot;
            onSnapshot(targets);
            resolve();
          };
          this.send({ kvix: 'discovery?' });
        }),
      stop: async () => {
        this.onTargets = null;
        this.discovered = null;
      },
    };
  }

  /**
   * The InferencePool's rewrite rules and objectives as the primary follows them: `apply` now (they
   * arrive before discovery's first snapshot) and on every change. Never called when no pool is followed.
   */
  followPool(apply: (resources: PoolResourcesState) => void): void {
    this.onPoolResources = apply;
    if (this.poolResources) apply(this.poolResources);
  }

  /**
   * The endpoints' load as the primary scrapes it, into this worker's endpoint registry (which
   * scrapes nothing itself): one scrape of each pod per interval for the whole EPP.
   */
  followScrapes(sink: (id: string, outcome: ScrapeOutcome) => void): void {
    this.scrapeSink = sink;
    for (const [id, outcome] of this.earlyScrapes) sink(id, outcome);
    this.earlyScrapes.clear();
  }

  /**
   * The latency predictor, learning from every worker's requests: what this worker observes goes
   * to the others (through the primary) and theirs come here, so a built-in model learns from all
   * of the EPP's traffic rather than this worker's share. A training server still gets each
   * observation once, from the worker that made it.
   */
  shareTraining(predictor: LatencyPredictor): LatencyPredictor {
    this.predictor = predictor;
    return {
      predict: (rows) => predictor.predict(rows),
      train: (entries) => {
        predictor.train(entries);
        for (const e of entries) this.training.push(e);
      },
      learnFromPeers: (entries) => predictor.learnFromPeers(entries),
      describe: () => predictor.describe(),
      close: () => predictor.close(),
    };
  }

  serve(surface: WorkerSurface): void {
    this.surface = surface;
  }

  /** The worker's debug API (never listening): the primary forwards its metrics port's debug requests to it. */
  serveDebug(app: FastifyInstance): void {
    this.debug = app;
  }

  /**
   * Shares this worker's requests in flight with the other workers (through the primary) and adds
   * theirs to its own when scoring load — as active-active replicas do over NATS — so that during
   * a burst no worker sees only its share of what the pods are being sent.
   */
  shareLoad(source: InFlightSource, tokens: InFlightTokenSource | null = null): void {
    this.load = source;
    source.setPeerInFlight((id) => this.peerTotals.get(id) ?? 0);
    const stops = [source.onInFlightChange(() => this.scheduleLoad())];
    if (tokens) {
      // What the latency predictor is told of a pod must be everything the EPP has sent it, not this worker's share.
      this.tokens = tokens;
      tokens.setPeerTokens((id) => this.peerTokenTotals.get(id) ?? NO_TOKENS);
      stops.push(tokens.onChange(() => this.scheduleLoad()));
    }
    this.stopLoad = () => {
      for (const stop of stops) stop();
    };
  }

  started(ports: { gatewayPort: number | null; extProcPort: number | null }): void {
    this.send({ kvix: 'started', ...ports });
  }

  /**
   * A decision's speculative entries for the other workers. Sent at the end of this turn of the
   * event loop with the turn's other decisions: each message to the primary is a write that wakes
   * it, and on busy cores that write was most of what a worker spent beyond a single process
   * (bench/README.md, workers). The other workers get them at the end of this turn instead of at
   * once: a fraction of a millisecond, against the speculation's whole point of covering the
   * seconds before the pod's own events arrive.
   */
  publish(requestKeys: BigUint64Array, entries: readonly PodEntry[], ttlMs: number | undefined): void {
    this.decisions.push({ requestKeys, entries: [...entries], ttlMs: ttlMs ?? 0 });
  }

  close(): void {
    process.off('message', this.onMessage);
    this.stopLoad?.();
    if (this.loadTimer) clearTimeout(this.loadTimer);
  }

  private scheduleLoad(): void {
    if (this.loadTimer) return;
    this.loadTimer = setTimeout(() => {
      this.loadTimer = null;
      if (this.load) this.send({ kvix: 'load', counts: Object.fromEntries(this.load.ownInFlight()), tokens: this.ownTokens() });
    }, LOAD_FLUSH_MS);
  }

  private ownTokens(): Record<string, TokensInFlight> {
    const out: Record<string, TokensInFlight> = {};
    if (this.tokens) for (const [id, t] of this.tokens.own()) if (t.prefill > 0 || t.decode > 0) out[id] = { prefill: t.prefill, decode: t.decode };
    return out;
  }

  private peerLoad(slot: number, counts: Record<string, number>, tokens: Record<string, TokensInFlight>): void {
    if (Object.keys(counts).length === 0) this.peerLoads.delete(slot);
    else this.peerLoads.set(slot, counts);
    this.peerTotals = sumCounts(this.peerLoads.values());
    if (Object.keys(tokens).length === 0) this.peerTokenLoads.delete(slot);
    else this.peerTokenLoads.set(slot, tokens);
    this.peerTokenTotals = sumTokens(this.peerTokenLoads.values());
  }

  private send(m: WorkerMessage): void {
    // The channel is gone when the primary died; the worker is stopping then (see main).
    if (process.connected) process.send!(m);
  }

  private receive(m: unknown): void {
    if (!isPrimaryMessage(m)) return;
    const msg = m as PrimaryMessage;
    switch (msg.kvix) {
      case 'snapshot':
        this.enqueue(() => {
          if (msg.snapshot && this.index) this.index.importSnapshot(msg.snapshot);
          this.appliedSeq = msg.seq;
          this.fedResolve?.();
          this.fedResolve = null;
          return Promise.resolve();
        });
        break;
      case 'ops':
        this.enqueue(async () => {
          if (this.index) await applyIndexOps(this.index, msg.ops);
          this.appliedSeq = msg.seq;
        });
        break;
      case 'speculation':
        if (this.index) {
          for (const d of msg.decisions) {
            const entries = d.entries.map((e) => ({ ...e, speculative: true }));
            void this.index.add(null, d.requestKeys, entries, d.ttlMs > 0 ? { ttlMs: d.ttlMs } : {}).catch((err: unknown) => this.dropped(err));
          }
        }
        break;
      case 'peer-load':
        this.peerLoad(msg.slot, msg.counts, msg.tokens);
        break;
      case 'pool-resources':
        this.poolResources = msg.resources;
        this.onPoolResources?.(msg.resources);
        break;
      case 'training':
        this.predictor?.learnFromPeers(msg.entries);
        break;
      case 'scrapes':
        for (const { id, outcome } of msg.scrapes) {
          if (this.scrapeSink) this.scrapeSink(id, outcome);
          else this.earlyScrapes.set(id, outcome);
        }
        break;
      case 'targets':
        if (this.discovered) this.discovered(msg.targets);
        else this.onTargets?.(msg.targets);
        break;
      case 'status?':
        this.answer('status', this.status().then((status) => this.send({ kvix: 'status', id: msg.id, status })));
        break;
      case 'metrics?':
        this.answer('metrics', this.metrics().then((metrics) => this.send({ kvix: 'metrics', id: msg.id, metrics })));
        break;
      case 'http?':
        this.answer('debug request', this.http(msg).then((answer) => this.send(answer)));
        break;
      case 'analytics?':
        this.answer('analytics', this.analytics(msg.prefixes).then((analytics) => this.send({ kvix: 'analytics', id: msg.id, analytics })));
        break;
    }
  }

  /**
   * A question of the primary's that could not be answered is left unanswered (the primary counts
   * the worker as not answering, as if it were busy), logged once per kind: never an unhandled
   * rejection, which would take the worker and its connections down.
   */
  private answer(kind: string, answering: Promise<void>): void {
    answering.catch((err: unknown) => this.failed(kind, err, "cannot answer the primary's question; it counts this worker as not answering"));
  }

  /** Counts a failure of `kind` and logs the first and every thousandth: an outage is one line, not one per attempt. */
  private failed(kind: string, err: unknown, message: string): void {
    const n = (this.failures.get(kind) ?? 0) + 1;
    this.failures.set(kind, n);
    if (n === 1 || n % 1000 === 0) this.logger.warn({ kind, err: (err as Error).message, total: n }, message);
  }

  private enqueue(step: () => Promise<void>): void {
    this.applying = this.applying.then(step).catch((err: unknown) => this.dropped(err));
  }

  private dropped(err: unknown): void {
    this.malformed++;
    if (this.malformed === 1 || this.malformed % 1000 === 0) this.logger.warn({ err: (err as Error).message, total: this.malformed }, 'an index operation from the primary could not be applied; skipped');
  }

  private async status(): Promise<WorkerStatus> {
    const r = this.surface?.readiness() ?? { ready: false, detail: { starting: true } };
    const own = this.load ? Object.fromEntries(this.load.ownInFlight()) : {};
    return {
      pid: process.pid,
      ready: r.ready,
      detail: r.detail ?? {},
      appliedSeq: this.appliedSeq,
      // A Redis index that is not reachable (yet) has no counts to give; the rest of the status stands.
      pods: this.surface ? await this.surface.pods().catch(() => []) : [],
      inFlight: { own, peers: Object.fromEntries(this.peerTotals) },
      tokensInFlight: { own: this.ownTokens(), peers: Object.fromEntries(this.peerTokenTotals) },
    };
  }

  private async http(msg: Extract<PrimaryMessage, { kvix: 'http?' }>): Promise<WorkerMessage> {
    const unavailable = (message: string): WorkerMessage => ({ kvix: 'http', id: msg.id, status: 503, contentType: 'application/json', body: JSON.stringify({ error: { code: 'STARTING', message } }) });
    if (!this.debug) return unavailable('this worker is still starting');
    try {
      const res = await this.debug.inject({ method: msg.method, url: msg.url, ...(msg.body !== null ? { payload: msg.body, headers: { 'content-type': 'application/json' } } : {}) });
      const type = res.headers['content-type'];
      return { kvix: 'http', id: msg.id, status: res.statusCode, contentType: typeof type === 'string' ? type : null, body: res.body };
    } catch (err) {
      return unavailable(`the worker could not answer: ${(err as Error).message}`);
    }
  }

  private async analytics(prefixes: boolean): Promise<WorkerAnalytics | null> {
    if (!this.surface?.analytics) return null;
    try {
      return await this.surface.analytics(prefixes);
    } catch (err) {
      // Answered as none: the primary names this worker as missing from the merge.
      this.failed('gathering analytics', err, 'cannot gather reuse analytics for the primary');
      return null;
    }
  }

  private async metrics(): Promise<MetricFamilyJson[]> {
    if (!this.surface) return [];
    const families = await this.surface.registry.getMetricsAsJSON();
    // Plain data only: a metric's collect function cannot cross the channel.
    return families.map((f) => ({ name: f.name, help: f.help, type: String(f.type), aggregator: f.aggregator, values: f.values.map((v) => ({ value: v.value, labels: { ...v.labels } as Record<string, string | number>, ...('metricName' in v && typeof v.metricName === 'string' ? { metricName: v.metricName } : {}) })) }));
  }
}
