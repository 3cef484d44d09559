import { InMemoryIndex } from '@kvix/kv-index';
import { createKubernetesRuntime, KubernetesError } from '@kvix/kubernetes';
import { ConfigError } from '@kvix/service-kit';
import { createDiscoverySources, createIndexStack, DiscoveryHub, IngestMetrics, Ingestor, type IndexStack } from '@kvix/kv-ingest';
import { indexRole, Replication } from '@kvix/replication';
import { ReuseHistory } from '@kvix/reuse-page';
import { AdaptiveSpeculativeTtl, PrefixScorer, ReuseAnalytics, ScoringMetrics } from '@kvix/scoring';
import { ModelTokenizers } from '@kvix/tokenization';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { ApiMetrics } from './api-metrics.js';
import type { IndexerConfig } from './config.js';
import { HEALTH_SERVICES, startGrpcServer, type RunningGrpc } from './grpc/server.js';
import { buildHttpServer } from './http/server.js';
import { discoveryDirectory, ingestorDirectory, type PodDirectory } from './pod-directory.js';

/**
 * The consultant a router asks "how much of this request's prefix does each pod hold?": KV-event
 * ingestion, the block index, tokenization and the scorer in one process, served over gRPC and
 * HTTP. Ready once discovery ran, every pod's startup replay was attempted and the configured
 * tokenizers are loaded.
 */
export class Indexer {
  private stopping: Promise<void> | null = null;
  private tokenizersReady = false;

  private constructor(
    readonly config: IndexerConfig,
    readonly stack: IndexStack,
    /** Null when another process ingests (a follower of the index stream, or a shared Redis index). */
    readonly ingestor: Ingestor | null,
    private readonly hub: DiscoveryHub,
    readonly pods: PodDirectory,
    readonly scorer: PrefixScorer,
    readonly analytics: ReuseAnalytics,
    private readonly tokenizers: ModelTokenizers,
    private readonly logger: Logger,
    readonly replication: Replication | null,
    private readonly history: ReuseHistory,
    private http: FastifyInstance | null = null,
    private grpc: RunningGrpc | null = null,
  ) {}

  static async start(config: IndexerConfig, logger: Logger): Promise<Indexer> {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const ingestMetrics = new IngestMetrics(registry);
    const scoringMetrics = new ScoringMetrics(registry);
    const apiMetrics = new ApiMetrics(registry);
    const { mode, ingests } = indexRole(config.replication, config.index.backend, config.kvEvents);
    const kube = await kubernetesRuntime(config, registry, logger);
    const replication = config.replication.natsUrl === undefined ? null : await Replication.start(config.replication, { registry, logger: logger.child({ component: 'replication' }) });
    // Decisions' speculative entries live as long as this pod's events take to confirm them.
    const speculativeTtl = AdaptiveSpeculativeTtl.fromSettings(config.index);
    if (speculativeTtl) scoringMetrics.watchSpeculativeTtl(speculativeTtl);
    // Learned from each decision's last block being stored where this process applies the pods' events;
    // a replica following the index stream learns from the index's confirmations of live speculations.
    const confirmations = speculativeTtl && !ingests ? { speculationConfirmed: (pod: string, ms: number) => speculativeTtl.observeConfirmation(pod, ms) } : null;
    const stack = createIndexStack(config.index, ingestMetrics, {
      logger: logger.child({ component: 'index' }),
      ...(confirmations ? { observer: confirmations } : {}),
      applierIndex: (backend) => {
        const applied = mode === 'publish' ? replication!.publishTo(backend) : backend;
        return speculativeTtl && ingests ? speculativeTtl.watchStores(applied) : applied;
      },
    });
    const hub = new DiscoveryHub([...createDiscoverySources(config.ingest, logger), ...(kube ? [kube.discovery] : [])]);
    // A follower (or a replica of a shared Redis index) dials no pod: another process ingests.
    const ingestor = ingests ? new Ingestor({ config: config.ingest, applier: stack.applier, metrics: ingestMetrics, logger: logger.child({ component: 'ingest' }), discovery: [hub.asSource()], backend: stack.status }) : null;
    const pods = ingestor ? ingestorDirectory(ingestor) : discoveryDirectory(hub);
    const tokenizers = new ModelTokenizers(config.tokenization, { observer: scoringMetrics.tokenizationObserver() });
    const analytics = new ReuseAnalytics(config.index.blockSize, scoringMetrics, config.analytics.sketchCapacity);
    // Routing decisions recorded here (POST /v1/routing-decisions, RecordDecision) reach the EPP replicas too.
    const scorerIndex = replication && config.replication.shareSpeculation && config.index.backend !== 'redis' ? replication.shareSpeculation(stack.index, stack.backend) : stack.index;
    const scorer = new PrefixScorer({
      index: scorerIndex,
      hasher: stack.hasher,
      weights: stack.weights,
      tokenizer: tokenizers,
      maxPromptTokens: config.tokenization.maxPromptTokens,
      isKnownPod: (pod) => pods.hasPod(pod),
      metrics: scoringMetrics,
      analytics,
      previewChars: config.analytics.prefixPreviewChars,
      logger: logger.child({ component: 'scoring' }),
      speculativeTtl,
    });
    const history = new ReuseHistory({ analytics, stack, pods, ingestMetrics }, { intervalMs: config.analytics.historyIntervalMs, capacity: config.analytics.historyPoints });
    const indexer = new Indexer(config, stack, ingestor, hub, pods, scorer, analytics, tokenizers, logger, replication, history);
    try {
      indexer.http = buildHttpServer({
        scorer,
        stack,
        pods,
        analytics,
        ingestMetrics,
        apiMetrics,
        registry,
        readiness: () => indexer.readiness(),
        liveness: () => indexer.liveness(),
        topPrefixes: config.analytics.topPrefixes,
        listener: config.http,
        debugRoutes: config.debugRoutes,
        history,
        logger: logger.child({ component: 'http' }),
      });
      // Probes answer while ingestion catches up (readyz says 503 until then).
      await indexer.http.listen({ host: config.http.host, port: config.http.port }).catch((err: Error) => {
        throw new Error(`cannot listen for HTTP on ${config.http.host}:${config.http.port}: ${err.message}`, { cause: err });
      });
      indexer.grpc = await startGrpcServer({ scorer, stack, pods, metrics: apiMetrics, logger: logger.child({ component: 'grpc' }), debugRoutes: config.debugRoutes }, config.grpc);
      if (replication && mode === 'publish') await replication.startPublishing();
      if (replication && mode === 'follow' && stack.backend instanceof InMemoryIndex) await replication.follow(stack.backend);
      if (ingestor) await ingestor.start();
      else await hub.start();
      await tokenizers.warmUpServed(pods.pods().map((p) => p.model), (model, err) => logger.warn({ model, err: err.message }, 'no tokenizer for a model the pods serve: its prompts are scored only when sent as token ids'));
      indexer.tokenizersReady = true;
      history.start();
    } catch (err) {
      await indexer.stop();
      throw err;
    }
    void (ingestor ? ingestor.whenReady() : Promise.resolve()).then(() => {
      if (indexer.stopping) return;
      for (const s of HEALTH_SERVICES) indexer.grpc?.health.setStatus(s, 'SERVING');
      logger.info('indexer ready');
    });
    logger.info({ http: indexer.httpUrl, grpcPort: indexer.grpcPort, mode: config.ingest.mode, ingesting: ingestor !== null, replication: mode, endpointsFile: config.ingest.endpointsFile ?? null, blockSize: config.index.blockSize }, 'indexer started');
    return indexer;
  }

  readiness(): { ready: boolean; detail: Record<string, unknown> } {
    const pods = this.pods.pods();
    const ingestion = this.ingestor ? this.ingestor.ready : true;
    const replication = this.replication ? this.replication.ready() : true;
    const tokenization = this.tokenizers.health();
    const ready = ingestion && this.tokenizersReady && (tokenization?.ok ?? true) && replication && this.stopping === null;
    return { ready, detail: { ingestion: this.ingestor ? ingestion : 'another process ingests', tokenizers: this.tokenizersReady, tokenization, replication, pods: pods.length, connected: pods.filter((p) => p.connected).length } };
  }

  /** Worth keeping alive: not when local tokenization is dead (its threads keep dying), which a restart may cure. */
  liveness(): { ready: boolean; detail: Record<string, unknown> } {
    const tokenization = this.tokenizers.health();
    return { ready: this.stopping !== null || (tokenization?.ok ?? true), detail: { tokenization } };
  }

  get httpUrl(): string {
    const addr = this.http?.server.address();
    const port = typeof addr === 'object' && addr !== null ? addr.port : this.config.http.port;
    const host = this.config.http.host === '0.0.0.0' || this.config.http.host === '::' ? '127.0.0.1' : this.config.http.host;
    return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  }

  get grpcPort(): number {
    return this.grpc?.port ?? this.config.grpc.port;
  }

  /** Stops taking requests (gRPC drains within the shutdown budget), then ingestion, tokenizers, index. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.history.stop();
      await Promise.allSettled([this.http?.close(), this.grpc?.stop(Math.max(100, this.config.shutdownTimeoutMs / 2))]);
      await this.ingestor?.stop();
      await this.replication?.close();
      await this.hub.stop();
      await this.tokenizers.close();
      await this.stack.index.close();
      this.logger.info('indexer stopped');
    })();
    return this.stopping;
  }
}

/** Kubernetes discovery when configured; a kubeconfig problem is a configuration error (exit 2). */
async function kubernetesRuntime(config: IndexerConfig, registry: Registry, logger: Logger): ReturnType<typeof createKubernetesRuntime> {
  try {
    return await createKubernetesRuntime(config.kubernetes, config.ingest, { registry, logger });
  } catch (err) {
    if (err instanceof KubernetesError && err.code === 'KUBECONFIG') throw new ConfigError(err.message);
    throw err;
  }
}
