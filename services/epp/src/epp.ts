import type { KubernetesRuntime } from '@kvix/kubernetes';
import { createIndexStack, DiscoveryHub, IngestMetrics, Ingestor, type IndexStack } from '@kvix/kv-ingest';
import { Replication, SpeculationSharingIndex } from '@kvix/replication';
import { createRouter, RouterMetrics, SchedulerError, type DirectorObserver, type Router } from '@kvix/scheduler';
import { ConfigError } from '@kvix/service-kit';
import { ReuseHistory, speculationTally } from '@kvix/reuse-page';
import { AdaptiveSpeculativeTtl, PrefixScorer, ReuseAnalytics, ScoringMetrics } from '@kvix/scoring';
import { ModelTokenizers } from '@kvix/tokenization';
import type { LatencyPredictor } from '@kvix/latency-predictor';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { replicationRole, type EppConfig } from './config.js';
import { createEppDiscovery, followPool } from './discovery.js';
import type { PrimaryLink, WorkerSurface } from './cluster/worker-link.js';
import { startExtProcServer, type RunningExtProc } from './extproc/server.js';
import { Gateway } from './gateway/gateway.js';
import { registerLatencyDebug, wireLatency } from './latency.js';
import { buildOpsServer, type OpsContext } from './ops.js';
import { BUILD } from './build-info.js';

/**
 * The endpoint picker: discovery, (by default) an embedded block index fed by every pod's KV
 * events, the scheduler, and the fronts that carry requests to it — Envoy's ext_proc and the
 * HTTP gateway — plus metrics and probes.
 */
export class Epp {
  private stopping: Promise<void> | null = null;
  /** The ext_proc server and gateway accept connections (readiness must not run ahead of them). */
  private frontsListening = false;
  gateway: Gateway | null = null;
  extProc: RunningExtProc | null = null;
  private ops: FastifyInstance | null = null;
  /** Samples the reuse analytics for /ui (embedded index only). */
  private history: ReuseHistory | null = null;
  /** Predicts TTFT/TPOT for SLO requests; null when no predicted-latency routing is configured. */
  latencyPredictor: LatencyPredictor | null = null;
  /** The embedded index's scorer; null with a remote indexer. */
  prefixScorer: PrefixScorer | null = null;
  /** The pool's InferenceModelRewrite/InferenceObjective resources and status, when discovery follows an InferencePool. */
  private poolFollow: { stop(): Promise<void> } | null = null;
  kubernetes: KubernetesRuntime | null = null;

  private constructor(
    readonly config: EppConfig,
    readonly router: Router,
    readonly hub: DiscoveryHub,
    readonly ingestor: Ingestor | null,
    readonly stack: IndexStack | null,
    private readonly tokenizers: ModelTokenizers | null,
    private readonly logger: Logger,
    readonly replication: Replication | null,
  ) {}

  /**
   * `observer` sees every routing decision (benchmarks measure decision latency with it). `worker`:
   * this process is one of `--routing-workers`; the primary ingests and serves the metrics port, this one
   * follows its index over the link and routes.
   */
  static async start(config: EppConfig, logger: Logger, options: { observer?: DirectorObserver; worker?: PrimaryLink } = {}): Promise<Epp> {
    const worker = options.worker ?? null;
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const routerMetrics = new RouterMetrics(registry);
    routerMetrics.setInfo(BUILD.commit, BUILD.ref);
    const role = replicationRole(config);
    const replicationMode = role.mode;
    // A worker's index is the primary's, followed over the cluster channel.
    const ingests = role.ingests && !worker;
    // Before anything listens: a replica that cannot reach its peers' state must say so and stop.
    // A worker's replication is its primary's: one connection, relaying both ways.
    const replication = config.replication.natsUrl === undefined || worker ? null : await Replication.start(config.replication, { registry, logger: logger.child({ component: 'replication' }) });
    // A worker's discovery is the primary's: one watch of the API, one writer of the pool's status and Events.
    const discovery = worker ? { kube: null, hub: new DiscoveryHub([worker.discovery()]) } : await createEppDiscovery(config, { registry, logger }).catch(async (err: unknown) => {
      await replication?.close();
      throw err;
    });
    const { kube, hub } = discovery;
    let ingestor: Ingestor | null = null;
    let stack: IndexStack | null = null;
    let tokenizers: ModelTokenizers | null = null;
    let prefixScorer: PrefixScorer | null = null;
    let reuse: OpsContext['reuse'] = null;
    /** A worker's answer to the primary, which merges every worker's for /v1/analytics and /ui. */
    let workerAnalytics: WorkerSurface['analytics'] | null = null;
    if (config.embeddedIndex) {
      const ingestMetrics = new IngestMetrics(registry);
      const scoringMetrics = new ScoringMetrics(registry);
      // Decisions' speculative entries live as long as this pod's events take to confirm them.
      const speculativeTtl = AdaptiveSpeculativeTtl.fromSettings(config.index);
      if (speculativeTtl) scoringMetrics.watchSpeculativeTtl(speculativeTtl);
      // Learned from each decision's last block being stored where this process applies the pods' events;
      // a replica following the index stream learns from the index's confirmations of live speculations.
      const confirmations = speculativeTtl && !ingests ? { speculationConfirmed: (pod: string, ms: number) => speculativeTtl.observeConfirmation(pod, ms) } : null;
      stack = createIndexStack(config.index, ingestMetrics, {
        logger: logger.child({ component: 'index' }),
        ...(confirmations ? { observer: confirmations } : {}),
        applierIndex: (backend) => {
          const applied = replication && replicationMode === 'publish' ? replication.publishTo(backend) : backend;
          return speculativeTtl && ingests ? speculativeTtl.watchStores(applied) : applied;
        },
      });
      // A follower dials no pod: the index stream carries what the publisher's ingestion applied.
      if (ingests) ingestor = new Ingestor({ config: config.ingest, applier: stack.applier, metrics: ingestMetrics, logger: logger.child({ component: 'ingest' }), discovery: [hub.asSource()], backend: stack.status });
      tokenizers = new ModelTokenizers(config.tokenization, { observer: scoringMetrics.tokenizationObserver() });
      // A worker shares its decisions through the primary: with the other workers (unless they share a Redis
      // index) and with the other replicas (--nats-url).
      const sharesDecisions = stack.backend.backend === 'memory' || (config.replication.natsUrl !== undefined && config.replication.shareSpeculation);
      const scorerIndex = worker ? (sharesDecisions ? new SpeculationSharingIndex(stack.index, worker) : stack.index) : replication && config.replication.shareSpeculation ? replication.shareSpeculation(stack.index, stack.backend) : stack.index;
      const analytics = new ReuseAnalytics(config.index.blockSize, scoringMetrics);
      prefixScorer = new PrefixScorer({
        index: scorerIndex,
        hasher: stack.hasher,
        weights: stack.weights,
        tokenizer: tokenizers,
        maxPromptTokens: config.tokenization.maxPromptTokens,
        isKnownPod: (pod) => (ingestor ? ingestor.hasPod(pod) : hub.targets.some((t) => t.id === pod)),
        metrics: scoringMetrics,
        analytics,
        logger: logger.child({ component: 'scoring' }),
        speculativeTtl,
      });
      // A follower has no ingestor: discovery names the pods, the publisher reads their events.
      const ing = ingestor;
      const pods = { pods: () => (ing ? ing.podStates() : hub.targets.map((t) => ({ id: t.id, stream: null }))) };
      const sources = { analytics, stack, pods, ingestMetrics };
      const workerStack = stack;
      workerAnalytics = async (prefixes) => ({ reuse: analytics.state({ prefixes }), speculation: await speculationTally(workerStack, ingestMetrics) });
      reuse = { sources, history: new ReuseHistory(sources, { intervalMs: config.analytics.historyIntervalMs, capacity: config.analytics.historyPoints }), topPrefixes: config.analytics.topPrefixes };
    }
    const latency = await wireLatency(config, registry, logger, worker ? (p) => worker.shareTraining(p) : undefined);
    let router: Router;
    try {
      router = await createRouter({
        latency: latency.deps,
        config: latency.scheduler,
        discovery: hub,
        prefixScorer,
        metrics: routerMetrics,
        poolName: config.poolName ?? 'kvix',
        drainingLabel: config.drainingLabel,
        logger: logger.child({ component: 'scheduler' }),
        trustRequestChatTemplate: config.tokenization.trustRequestChatTemplate,
        // A worker's endpoint load is the primary's scrape of each pod, relayed (one scrape per pod, not one per worker).
        endpointMetrics: worker ? 'external' : 'scrape',
        ...(options.observer ? { observer: options.observer } : {}),
      });
    } catch (err) {
      await Promise.allSettled([hub.stop(), tokenizers?.close(), stack?.index.close(), replication?.close(), latency.predictor?.close()]);
      // A scheduler configuration mistake is a configuration error like any other (exit 2, one line).
      if (err instanceof SchedulerError) throw new ConfigError(err.message);
      throw err;
    }
    if (replication && config.replication.shareLoad) replication.shareLoad(router.registry, latency.deps?.inFlightTokens ?? null);
    const epp = new Epp(config, router, hub, ingestor, stack, tokenizers, logger, replication);
    epp.latencyPredictor = latency.predictor;
    epp.prefixScorer = prefixScorer;
    epp.kubernetes = kube;
    try {
      if (kube?.pool) await epp.followPool(kube);
      if (worker) {
        // The primary serves the metrics port: it asks this worker for its metrics and readiness.
        const index = stack?.index ?? null;
        worker.followPool((resources) => router.director.setPoolResources(resources));
        worker.followScrapes((id, outcome) => router.registry.recordScrape(id, outcome));
        worker.shareLoad(router.registry, latency.deps?.inFlightTokens ?? null);
        worker.serve({ registry, readiness: () => epp.readiness(), pods: async () => (index ? (await index.podCounts()).map((c) => ({ pod: c.pod, entries: c.entries, speculative: c.speculative })) : []), ...(workerAnalytics ? { analytics: workerAnalytics } : {}) });
        // The debug routes, never listening: the primary's metrics port (which applies its TLS and
        // token) forwards to them. No /ui or analytics here: each worker sees only its own decisions,
        // so the primary serves them, merging every worker's (see `serve`'s analytics).
        const debug = buildOpsServer({ registry, router, ingestor: null, stack, replication, scorer: prefixScorer, discoveredPods: () => hub.targets.map((t) => t.id), readiness: () => epp.readiness(), reuse: null, logger, listener: { ...config.metrics, tls: undefined, authTokenFile: undefined }, debugRoutes: config.debugRoutes });
        registerLatencyDebug(debug, latency.predictor);
        worker.serveDebug(debug);
        if (stack && stack.backend.backend === 'memory') await worker.follow(stack.backend);
      } else {
        epp.ops = buildOpsServer({ registry, router, ingestor, stack, replication, scorer: prefixScorer, discoveredPods: () => hub.targets.map((t) => t.id), readiness: () => epp.readiness(), liveness: () => epp.liveness(), reuse, logger, listener: config.metrics, debugRoutes: config.debugRoutes });
        epp.history = reuse?.history ?? null;
        registerLatencyDebug(epp.ops, latency.predictor);
        await epp.ops.listen({ host: config.metrics.host, port: config.metrics.port }).catch((err: Error) => {
          throw new Error(`cannot listen for metrics on ${config.metrics.host}:${config.metrics.port}: ${err.message}`, { cause: err });
        });
      }
      if (replication && stack && replicationMode === 'follow' && stack.backend.backend === 'memory') await replication.follow(stack.backend);
      if (replication && replicationMode === 'publish') await replication.startPublishing();
      if (ingestor) await ingestor.start();
      if (tokenizers) await tokenizers.warmUpServed(hub.targets.map((t) => t.model), (model, err) => logger.warn({ model, err: err.message }, 'no tokenizer for a model the pods serve: its prompts are routed on load only'));
      const streams = {
        opened: (): ((code: string) => void) => {
          const started = performance.now();
          routerMetrics.extProcStreamsInflight.inc();
          return (code) => {
            routerMetrics.extProcStreamsInflight.dec();
            routerMetrics.extProcStreamDuration.observe((performance.now() - started) / 1000);
            routerMetrics.extProcStreams.inc({ code });
          };
        },
      };
      if (config.extProc.enabled) epp.extProc = await startExtProcServer({ director: router.director, logger: logger.child({ component: 'ext-proc' }), registry, streams }, { ...config.extProc, maxBodyBytes: config.gateway.maxBodyBytes });
      if (config.gateway.enabled) epp.gateway = await Gateway.start({ ...config.gateway, director: router.director, logger: logger.child({ component: 'gateway' }), ...(worker ? { workerId: worker.workerId } : {}) });
      epp.frontsListening = true;
      epp.history?.start();
    } catch (err) {
      await epp.stop();
      throw err;
    }
    void (ingestor ? ingestor.whenReady() : Promise.resolve()).then(() => epp.extProc?.setServing(true));
    logger.info(
      {
        gateway: epp.gateway ? `http://${config.gateway.host}:${epp.gateway.port}` : null,
        extProcPort: epp.extProc?.port ?? null,
        metricsPort: epp.metricsPort,
        index: config.embeddedIndex ? 'embedded' : 'remote',
        replication: replication ? { index: replicationMode, replicaId: config.replication.replicaId } : 'off',
        endpoints: router.registry.size,
        latencyPredictor: latency.predictor?.describe().kind ?? 'off',
        ...(worker ? { worker: worker.workerId } : {}),
      },
      worker ? 'epp worker started' : 'epp started',
    );
    worker?.started({ gatewayPort: epp.gateway?.port ?? null, extProcPort: epp.extProc?.port ?? null });
    return epp;
  }

  /** The pool's rewrite and objective resources into the router, and the EPP's status onto the pool. */
  private async followPool(kube: KubernetesRuntime): Promise<void> {
    this.poolFollow = await followPool(kube, { config: this.config, hub: this.hub, logger: this.logger, apply: (resources) => this.router.director.setPoolResources(resources) });
  }

  get metricsPort(): number {
    const addr = this.ops?.server.address();
    return typeof addr === 'object' && addr !== null ? addr.port : this.config.metrics.port;
  }

  readiness(): { ready: boolean; detail: Record<string, unknown> } {
    const candidates = this.router.registry.candidates().length;
    const ingestion = this.ingestor ? this.ingestor.ready : true;
    const replication = this.replication ? this.replication.ready() : true;
    // Threads that keep dying leave routing without prefix scores: other replicas should take the traffic.
    const tokenization = this.tokenizers?.health() ?? null;
    return {
      ready: this.stopping === null && this.frontsListening && ingestion && replication && (tokenization?.ok ?? true) && candidates > 0,
      detail: { listening: this.frontsListening, ingestion, replication, tokenization, endpoints: this.router.registry.size, candidates },
    };
  }

  /** Worth keeping alive: not once local tokenization is dead (its threads keep dying); a restart may cure it. */
  liveness(): { ready: boolean; detail: Record<string, unknown> } {
    const tokenization = this.tokenizers?.health() ?? null;
    return { ready: this.stopping !== null || (tokenization?.ok ?? true), detail: { tokenization } };
  }

  /** Health turns NOT_SERVING, the fronts drain (half the shutdown budget), then everything stops. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const grace = Math.max(100, this.config.shutdownTimeoutMs / 2);
      this.history?.stop();
      this.extProc?.setServing(false);
      await Promise.allSettled([this.gateway?.close(grace), this.extProc?.stop(grace)]);
      await this.ops?.close();
      await this.router.close();
      await this.latencyPredictor?.close();
      await this.poolFollow?.stop();
      await this.ingestor?.stop();
      await this.replication?.close();
      await this.hub.stop();
      await this.tokenizers?.close();
      await this.stack?.index.close();
      this.logger.info('epp stopped');
    })();
    return this.stopping;
  }
}
