import cluster, { type Worker } from 'node:cluster';
import type { IndexSnapshot, InMemoryIndex } from '@kvix/kv-index';
import { createIndexStack, IngestMetrics, Ingestor, type IndexStack } from '@kvix/kv-ingest';
import { PublishingIndex, Replication, type IndexOp, type OpSink, type SpeculationSink } from '@kvix/replication';
import { registerReuseRoutes, ReuseHistory, type ReuseSources } from '@kvix/reuse-page';
import { fastifyListenerOptions, registerErrorHandlers, secureFastifyListener, sendError } from '@kvix/service-kit';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { Counter, Gauge, Registry } from 'prom-client';
import { replicationRole, type EppConfig } from '../config.js';
import { WorkersReuseTallies, type WorkerAnalyticsAnswer } from './analytics-merge.js';
import { RelayedFollowedIndex } from './followed-index.js';
import { isWorkerMessage, type PrimaryMessage, type SpeculativeDecision, type TokensInFlight, type WorkerMessage, type WorkerStatus } from './messages.js';
import { ReplicaLoad } from './replica-load.js';
import { SharedDiscovery } from './shared-discovery.js';
import { TurnBatch } from './turn-batch.js';
import { combineWorkerMetrics } from './worker-metrics.js';

/** A worker the primary asked a question that it did not answer within this long counts as not ready. */
const ASK_TIMEOUT_MS = 2000;
/** A forwarded debug request may tokenize a long prompt (POST /debug/score): it gets longer. */
const DEBUG_TIMEOUT_MS = 15_000;
/** The debug routes a worker answers (it holds the scheduler and a copy of the index); /ui and /v1/analytics merge every worker's (reuseRoutes). */
const FORWARDED_GETS = ['/debug/endpoints', '/debug/scheduler', '/debug/latency-predictor'];
/** The `peer-load` slot of the other EPP replicas' load (`--nats-url`): workers add it like a sibling worker's. */
const REPLICAS_SLOT = -1;
/** A worker dying again this soon after its start waits before the next one (doubling, up to 5 s). */
const QUICK_DEATH_MS = 5000;

interface Slot {
  index: number;
  worker: Worker;
  startedAt: number;
  /** It answered `started`: its fronts listen. */
  started: boolean;
  /** It has the snapshot and receives every index batch. */
  fed: boolean;
  quickDeaths: number;
  /** Its requests and tokens in flight per endpoint, as it last said (relayed to the others). */
  load: Record<string, number>;
  tokens: Record<string, TokensInFlight>;
  /** It asked for discovery: it gets every change of the pods and of the pool's resources. */
  discovery: boolean;
}

type Pending = { resolve: (m: WorkerMessage) => void; timer: NodeJS.Timeout };

/**
 * `kvix-epp --routing-workers N`: the primary process. It owns discovery (with Kubernetes: the one
 * watch of the API, and the one writer of the pool's status and Events), KV-event ingestion and the
 * one block index (the single writer), and feeds N worker processes that share the ext_proc and
 * gateway ports (node:cluster hands each new connection to a worker): the pods and the pool's
 * resources as discovery reports them, the index as a snapshot followed by every operation its
 * applier performed (what an HA replica follows on the index stream, here over the cluster
 * channel), and each worker's routing decisions (speculative entries) and load to the others, so a
 * burst spread over the workers still sees the first decision. It serves the metrics port: the
 * workers' metrics summed beside its own, readiness = ingestion ready and every worker ready. A
 * worker that dies is logged once and replaced.
 */
export class EppPrimary implements OpSink {
  private readonly slots: Slot[] = [];
  private readonly registry = new Registry();
  private readonly restarts: Counter;
  private ops: FastifyInstance | null = null;
  private stack: IndexStack | null = null;
  private ingestor: Ingestor | null = null;
  private discovery: SharedDiscovery | null = null;
  private ingestMetrics: IngestMetrics | null = null;
  /** Samples the workers' merged reuse analytics for /ui (embedded index only). */
  private history: ReuseHistory | null = null;
  /** The applier's operations of this event-loop turn, one `ops` message to every fed worker. */
  private readonly opsBatch = new TurnBatch<IndexOp>((ops) => this.broadcast({ kvix: 'ops', seq: ++this.seq, ops }));
  /** Index batches sent so far; a fed worker's appliedSeq reaches it. */
  private seq = 0;
  private asked = 0;
  /** The worker the next forwarded debug request goes to (in turn). */
  private nextDebug = 0;
  private readonly pending = new Map<number, Pending>();
  /** With `--nats-url`: this EPP's one connection to its peer replicas, for all its workers. */
  private replication: Replication | null = null;
  /** What the EPP does with the replicated index, and whether it dials the pods' events (checked at construction). */
  private readonly role: ReturnType<typeof replicationRole>;
  /** Where the workers' routing decisions go to reach the other replicas. */
  private speculationOut: SpeculationSink | null = null;
  /** The other replicas' decisions of this event-loop turn, for the workers following the index. */
  private readonly peerDecisions = new TurnBatch<SpeculativeDecision>((decisions) => this.broadcast({ kvix: 'speculation', decisions }));
  private replicaLoad: ReplicaLoad | null = null;
  /** The other replicas' load as last relayed, for a worker that starts later. */
  private replicasLoad: { counts: Record<string, number>; tokens: Record<string, TokensInFlight> } = { counts: {}, tokens: {} };
  private stopping: Promise<void> | null = null;
  private startupFailure: ((err: Error) => void) | null = null;
  private ports: { gatewayPort: number | null; extProcPort: number | null } = { gatewayPort: null, extProcPort: null };

  private constructor(
    private readonly config: EppConfig,
    private readonly workers: number,
    private readonly logger: Logger,
  ) {
    this.role = replicationRole(config);
    this.restarts = new Counter({ name: 'kvix_epp_worker_restarts_total', help: 'EPP worker processes that died and were replaced (--routing-workers).', registers: [this.registry] });
    new Gauge({ name: 'kvix_epp_workers', help: 'EPP worker processes configured (--routing-workers).', registers: [this.registry] }).set(workers);
    const slots = this.slots;
    new Gauge({
      name: 'kvix_epp_workers_started',
      help: 'EPP worker processes whose fronts are listening (--routing-workers).',
      registers: [this.registry],
      collect() {
        this.set(slots.filter((s) => s.started).length);
      },
    });
  }

  static async start(config: EppConfig, workers: number, logger: Logger): Promise<EppPrimary> {
    const primary = new EppPrimary(config, workers, logger);
    try {
      await primary.startReplication();
      await primary.startDiscovery();
      await primary.startIngestion();
      await primary.startOps();
      await primary.forkAll();
      primary.history?.start();
    } catch (err) {
      await primary.stop();
      throw err;
    }
    logger.info(
      {
        gateway: primary.ports.gatewayPort !== null ? `http://${config.gateway.host}:${primary.ports.gatewayPort}` : null,
        extProcPort: primary.ports.extProcPort,
        metricsPort: primary.metricsPort,
        index: config.embeddedIndex ? 'embedded' : 'remote',
        workers,
      },
      'epp started',
    );
    return primary;
  }

  get metricsPort(): number {
    const addr = this.ops?.server.address();
    return typeof addr === 'object' && addr !== null ? addr.port : this.config.metrics.port;
  }

  /** Discovery, the InferencePool and the pods' /metrics, once for all workers (see SharedDiscovery). */
  private async startDiscovery(): Promise<void> {
    this.discovery = await SharedDiscovery.start(this.config, {
      registry: this.registry,
      logger: this.logger,
      tell: (m) => this.tell(m),
    });
  }

  /**
   * With `--nats-url`, the EPP's part among its peer replicas, as a single process would play it:
   * connected before anything listens (a replica that cannot reach its peers' state must say so).
   */
  private async startReplication(): Promise<void> {
    const config = this.config;
    if (config.replication.natsUrl === undefined) return;
    this.replication = await Replication.start(config.replication, { registry: this.registry, logger: this.logger.child({ component: 'replication' }) });
    if (config.replication.shareLoad) {
      const load = new ReplicaLoad(
        () => this.slots.filter((s) => s !== undefined),
        () => (this.discovery?.hub.targets ?? []).map((t) => t.id),
        (counts, tokens) => {
          this.replicasLoad = { counts, tokens };
          this.tell({ kvix: 'peer-load', slot: REPLICAS_SLOT, counts, tokens });
        },
      );
      this.replicaLoad = load;
      this.replication.shareLoad(load.requests, load.tokens);
    }
  }

  /**
   * The index and the ingestor, as a single EPP process has them: its applier's operations (or, as a
   * follower, the index stream's) also go to the workers, and with `--nats-url` it publishes or
   * follows the index stream and exchanges the workers' decisions with the other replicas.
   */
  private async startIngestion(): Promise<void> {
    const config = this.config;
    if (!config.embeddedIndex) return;
    const replication = this.replication;
    const role = this.role;
    const metrics = new IngestMetrics(this.registry);
    this.ingestMetrics = metrics;
    // Workers follow an in-memory index over the channel; a Redis index they read themselves.
    const stack = createIndexStack(config.index, metrics, {
      logger: this.logger.child({ component: 'index' }),
      applierIndex: (backend) => {
        const applied = replication && role.mode === 'publish' ? replication.publishTo(backend) : backend;
        return backend.backend === 'memory' ? new PublishingIndex(applied, this) : applied;
      },
    });
    this.stack = stack;
    const memory = stack.backend.backend === 'memory' ? (stack.backend as InMemoryIndex) : null;
    if (replication && config.replication.shareSpeculation) {
      // The other replicas' decisions: to the workers' index copies, or into the Redis index they read.
      this.speculationOut = replication.exchangeSpeculation(memory ? { add: async (_engineKeys, requestKeys, entries, options) => this.peerDecisions.push({ requestKeys, entries: [...entries], ttlMs: options?.ttlMs ?? 0 }) } : stack.backend);
    }
    if (replication && role.mode === 'follow' && memory) await replication.follow(new RelayedFollowedIndex(memory, this));
    if (replication && role.mode === 'publish') await replication.startPublishing();
    if (role.ingests) {
      this.ingestor = new Ingestor({ config: config.ingest, applier: stack.applier, metrics, logger: this.logger.child({ component: 'ingest' }), discovery: [this.discovery!.hub.asSource()], backend: stack.status });
      await this.ingestor.start();
    }
  }

  private async startOps(): Promise<void> {
    // The same limits, TLS and bearer token as a single EPP's metrics port.
    const app = Fastify({ logger: false, ...fastifyListenerOptions(this.config.metrics) });
    secureFastifyListener(app, this.config.metrics);
    registerErrorHandlers(app, { onServerError: (req, c) => this.logger.error({ route: req.routeOptions.url, err: c.message }, 'metrics port request failed') });
    app.get('/healthz', async () => ({ status: 'ok' }));
    app.get('/readyz', async (_req, reply) => {
      const r = await this.readiness();
      return reply.code(r.ready ? 200 : 503).send({ status: r.ready ? 'ready' : 'not ready', ...r.detail });
    });
    app.get('/metrics', async (_req, reply) => {
      const aggregated = await this.metrics();
      return reply.header('content-type', aggregated.contentType).send(await aggregated.metrics());
    });
    app.get('/debug/workers', async () => ({ indexSeq: this.seq, restarts: (await this.restarts.get()).values[0]?.value ?? 0, workers: await this.statuses() }));
    app.get('/debug/pods', async () => ({ pods: this.stack ? await this.stack.index.podCounts() : [] }));
    for (const url of FORWARDED_GETS) app.get(url, (req, reply) => this.forward(req, reply));
    app.get('/debug/replication', async (_req, reply) => (this.replication ? this.replication.status() : sendError(reply, 404, 'NO_REPLICATION', 'this EPP runs alone (no --nats-url)')));
    app.post('/debug/score', (req, reply) => this.forward(req, reply));
    this.reuseRoutes(app);
    this.ops = app;
    await app.listen({ host: this.config.metrics.host, port: this.config.metrics.port }).catch((err: Error) => {
      throw new Error(`cannot listen for metrics on ${this.config.metrics.host}:${this.config.metrics.port}: ${err.message}`, { cause: err });
    });
  }

  /**
   * /v1/analytics, /ui and its history, as one EPP serves them: the index, the pods' event streams
   * and ingestion are this process's; the hit ratios, shared prefixes and speculation are the
   * workers' (where the decisions are made), asked for and merged on each request and sample.
   */
  private reuseRoutes(app: FastifyInstance): void {
    const stack = this.stack;
    const ingestMetrics = this.ingestMetrics;
    if (!stack || !ingestMetrics) return;
    const analytics = new WorkersReuseTallies((prefixes) => this.workerAnalytics(prefixes), this.config.index.blockSize);
    const ingestor = this.ingestor;
    const hub = this.discovery?.hub ?? null;
    const pods = { pods: () => (ingestor ? ingestor.podStates() : (hub?.targets ?? []).map((t) => ({ id: t.id, stream: null }))) };
    const sources: ReuseSources = { analytics, stack, pods, ingestMetrics };
    const { topPrefixes, historyIntervalMs, historyPoints } = this.config.analytics;
    this.history = new ReuseHistory(sources, { intervalMs: historyIntervalMs, capacity: historyPoints }, (err) => this.logger.debug({ err: err.message }, 'reuse history sample skipped'));
    registerReuseRoutes(app, { sources, history: this.history, topPrefixes, analyticsRoute: true });
  }

  /** Every worker's analytics; one that is not running or does not answer in time comes back null. */
  private workerAnalytics(prefixes: boolean): Promise<WorkerAnalyticsAnswer[]> {
    return Promise.all(
      this.slots.map(async (slot) => {
        const answer = await this.request(slot, (id) => ({ kvix: 'analytics?', id, prefixes }), ASK_TIMEOUT_MS);
        return { worker: String(slot.worker.id), startedAt: slot.startedAt, analytics: answer?.kvix === 'analytics' ? answer.analytics : null };
      }),
    );
  }

  /** Starts every worker; resolves when all listen, rejects if one dies before it does. */
  private async forkAll(): Promise<void> {
    // Advanced serialization: index keys cross as BigUint64Arrays, snapshots as typed arrays.
    cluster.setupPrimary({ serialization: 'advanced' });
    cluster.on('exit', (worker, code, signal) => this.exited(worker, code, signal));
    const all = new Promise<void>((resolve, reject) => {
      this.startupFailure = reject;
      this.allStarted = resolve;
    });
    for (let i = 0; i < this.workers; i++) this.fork(i, 0);
    await all;
    this.startupFailure = null;
  }

  private allStarted: (() => void) | null = null;

  private fork(index: number, quickDeaths: number): void {
    const worker = cluster.fork();
    const slot: Slot = { index, worker, startedAt: performance.now(), started: false, fed: false, quickDeaths, load: {}, tokens: {}, discovery: false };
    this.slots[index] = slot;
    worker.on('message', (m: unknown) => {
      if (isWorkerMessage(m)) this.received(slot, m);
    });
    // A send to a worker that just died fails; its exit is handled on 'exit'.
    worker.on('error', (err: Error) => this.logger.debug({ worker: worker.id, err: err.message }, 'worker channel error'));
  }

  private received(slot: Slot, m: WorkerMessage): void {
    switch (m.kvix) {
      case 'feed?':
        this.feed(slot);
        break;
      case 'discovery?':
        slot.discovery = true;
        for (const welcome of this.discovery?.welcome() ?? []) this.send(slot, welcome);
        // What the others (workers, and other replicas) have in flight now; later changes follow as they say them.
        for (const other of this.slots) if (other && other !== slot && (Object.keys(other.load).length > 0 || Object.keys(other.tokens).length > 0)) this.send(slot, { kvix: 'peer-load', slot: other.index, counts: other.load, tokens: other.tokens });
        if (Object.keys(this.replicasLoad.counts).length > 0 || Object.keys(this.replicasLoad.tokens).length > 0) this.send(slot, { kvix: 'peer-load', slot: REPLICAS_SLOT, ...this.replicasLoad });
        break;
      case 'started':
        slot.started = true;
        this.ports = { gatewayPort: m.gatewayPort, extProcPort: m.extProcPort };
        if (this.slots.length === this.workers && this.slots.every((s) => s.started)) this.allStarted?.();
        break;
      case 'speculation':
        // Relayed to every other worker following the index (the sender already holds it) and to the other replicas.
        this.broadcast(m, slot);
        for (const d of m.decisions) this.speculationOut?.publish(d.requestKeys, d.entries, d.ttlMs > 0 ? d.ttlMs : undefined);
        break;
      case 'training':
        this.tell(m, slot);
        break;
      case 'load':
        slot.load = m.counts;
        slot.tokens = m.tokens;
        this.relayLoad(slot);
        this.replicaLoad?.changed();
        break;
      case 'status':
      case 'metrics':
      case 'http':
      case 'analytics': {
        const p = this.pending.get(m.id);
        if (p) {
          clearTimeout(p.timer);
          this.pending.delete(m.id);
          p.resolve(m);
        }
        break;
      }
    }
  }

  /**
   * The snapshot, exported synchronously: operations applied before it are in it, later ones follow
   * in order. Operations still waiting in the current batch are in both, which is harmless (adds,
   * evictions and clears of exact entries are idempotent, as for the replicas' snapshots).
   */
  private feed(slot: Slot): void {
    const backend = this.stack?.backend.backend === 'memory' ? (this.stack.backend as InMemoryIndex) : null;
    const snapshot: IndexSnapshot | null = backend ? backend.exportSnapshot() : null;
    this.send(slot, { kvix: 'snapshot', seq: this.seq, snapshot });
    slot.fed = true;
  }

  /**
   * A worker's in-flight counts to every other worker that asked for discovery (all do, whatever
   * the index: load is shared with a remote indexer too); empty once it died: its requests died with it.
   */
  private relayLoad(from: Slot): void {
    this.tell({ kvix: 'peer-load', slot: from.index, counts: from.load, tokens: from.tokens }, from);
  }

  /** To every worker following the index, but `except` (the one it came from). */
  private broadcast(m: PrimaryMessage | WorkerMessage, except?: Slot): void {
    for (const slot of this.slots) if (slot !== except && slot.fed) this.send(slot, m);
  }

  /** To every worker that asked for discovery (every worker does, whatever its index), but `except`. */
  private tell(m: PrimaryMessage | WorkerMessage, except?: Slot): void {
    for (const slot of this.slots) if (slot !== except && slot.discovery) this.send(slot, m);
  }

  /** OpSink: the applier's operations, batched per turn of the event loop, to every fed worker. */
  enqueue(_pod: string, op: IndexOp): void {
    this.opsBatch.push(op);
  }

  private send(slot: Slot, m: PrimaryMessage | WorkerMessage): void {
    if (!slot.worker.isConnected()) return;
    try {
      slot.worker.send(m);
    } catch (err) {
      this.logger.debug({ worker: slot.worker.id, err: (err as Error).message }, 'cannot send to a worker');
    }
  }

  private exited(worker: Worker, code: number | null, signal: string | null): void {
    const slot = this.slots.find((s) => s?.worker === worker);
    if (!slot) return;
    if (this.stopping) return;
    if (!slot.started && this.startupFailure) {
      this.startupFailure(new Error(`epp worker ${worker.id} exited (${signal ?? `code ${code}`}) before it started; see its log above`));
      return;
    }
    const quick = performance.now() - slot.startedAt < QUICK_DEATH_MS;
    const quickDeaths = quick ? slot.quickDeaths + 1 : 0;
    const delayMs = quickDeaths === 0 ? 0 : Math.min(5000, 100 * 2 ** (quickDeaths - 1));
    this.restarts.inc();
    this.logger.warn({ worker: worker.id, pid: worker.process.pid, code, signal, restartInMs: delayMs }, 'epp worker died; starting another');
    slot.fed = false;
    slot.started = false;
    slot.load = {};
    slot.tokens = {};
    slot.discovery = false;
    this.relayLoad(slot);
    this.replicaLoad?.changed();
    const timer = setTimeout(() => {
      if (!this.stopping) this.fork(slot.index, quickDeaths);
    }, delayMs);
    timer.unref();
  }

  private ask(slot: Slot, question: 'status?' | 'metrics?'): Promise<WorkerMessage | null> {
    return this.request(slot, (id) => ({ kvix: question, id }), ASK_TIMEOUT_MS);
  }

  private request(slot: Slot, message: (id: number) => PrimaryMessage, timeoutMs: number): Promise<WorkerMessage | null> {
    if (!slot.worker.isConnected()) return Promise.resolve(null);
    const id = ++this.asked;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve(null);
      }, timeoutMs);
      this.pending.set(id, { resolve, timer });
      this.send(slot, message(id));
    });
  }

  /** A debug request answered by a worker's own debug routes (workers in turn); the answer names it in `x-kvix-worker`. */
  private async forward(req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const live = this.slots.filter((s) => s.started && s.fed && s.worker.isConnected());
    const problem = (status: number, code: string, message: string): FastifyReply => reply.code(status).send({ error: { code, message } });
    if (live.length === 0) return problem(503, 'NO_WORKER', 'no EPP worker is running to answer this');
    const slot = live[this.nextDebug++ % live.length]!;
    const method = req.method === 'POST' ? 'POST' : 'GET';
    const body = method === 'POST' ? JSON.stringify(req.body ?? null) : null;
    const answer = await this.request(slot, (id) => ({ kvix: 'http?', id, method, url: req.url, body }), DEBUG_TIMEOUT_MS);
    if (answer?.kvix !== 'http') return problem(504, 'WORKER_TIMEOUT', `EPP worker ${slot.worker.id} did not answer within ${DEBUG_TIMEOUT_MS} ms`);
    if (answer.contentType !== null) reply.header('content-type', answer.contentType);
    return reply.code(answer.status).header('x-kvix-worker', String(slot.worker.id)).send(answer.body);
  }

  private async statuses(): Promise<(WorkerStatus & { worker: number; slot: number; started: boolean; answered: boolean })[]> {
    return Promise.all(
      this.slots.map(async (slot) => {
        const answer = await this.ask(slot, 'status?');
        const status: WorkerStatus = answer?.kvix === 'status' ? answer.status : { pid: slot.worker.process.pid ?? 0, ready: false, detail: {}, appliedSeq: 0, pods: [], inFlight: { own: {}, peers: {} }, tokensInFlight: { own: {}, peers: {} } };
        return { worker: slot.worker.id, slot: slot.index, started: slot.started, answered: answer !== null, ...status };
      }),
    );
  }

  async readiness(): Promise<{ ready: boolean; detail: Record<string, unknown> }> {
    const workers = await this.statuses();
    const ingestion = this.ingestor ? this.ingestor.ready : true;
    const replication = this.replication ? this.replication.ready() : true;
    const ready = this.stopping === null && ingestion && replication && workers.length === this.workers && workers.every((w) => w.started && w.ready);
    return { ready, detail: { ingestion, replication, workers: workers.map((w) => ({ worker: w.worker, pid: w.pid, ready: w.ready, ...w.detail })) } };
  }

  /** Every worker's metrics summed (prom-client's cluster aggregation), beside the primary's own. */
  private async metrics(): Promise<Registry> {
    const answers = await Promise.all(this.slots.map((s) => this.ask(s, 'metrics?')));
    return combineWorkerMetrics(await this.registry.getMetricsAsJSON(), answers.map((a) => (a?.kvix === 'metrics' ? a.metrics : null)));
  }

  /** The workers stop gracefully (each drains its fronts), then ingestion and the metrics port. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const grace = Math.max(100, this.config.shutdownTimeoutMs - 500);
      this.history?.stop();
      await Promise.all(
        this.slots.filter((s) => s && !s.worker.isDead()).map(
          (s) =>
            new Promise<void>((resolve) => {
              const kill = setTimeout(() => s.worker.process.kill('SIGKILL'), grace);
              s.worker.once('exit', () => {
                clearTimeout(kill);
                resolve();
              });
              s.worker.process.kill('SIGTERM');
            }),
        ),
      );
      for (const p of this.pending.values()) clearTimeout(p.timer);
      await this.ops?.close();
      await this.discovery?.stop();
      await this.ingestor?.stop();
      await this.replication?.close();
      await this.discovery?.hub.stop();
      await this.stack?.index.close();
      this.logger.info('epp stopped');
    })();
    return this.stopping;
  }
}
