import { createIndexStack, IngestMetrics, Ingestor, type IndexStack } from '@kvix/kv-ingest';
import { Replication } from '@kvix/replication';
import { PrefixScorer, ReuseAnalytics, ScoringMetrics } from '@kvix/scoring';
import { ConfigError } from '@kvix/service-kit';
import { ModelTokenizers } from '@kvix/tokenization';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { ApiMetrics } from './api-metrics.js';
import type { IndexerConfig } from './config.js';
import { HEALTH_SERVICES, startGrpcServer, type RunningGrpc } from './grpc/server.js';
import { buildHttpServer } from './http/server.js';

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
    readonly ingestor: Ingestor,
    readonly scorer: PrefixScorer,
    readonly analytics: ReuseAnalytics,
    private readonly tokenizers: ModelTokenizers,
    private readonly logger: Logger,
    readonly replication: Replication | null,
    private http: FastifyInstance | null = null,
    private grpc: RunningGrpc | null = null,
  ) {}

  static async start(config: IndexerConfig, logger: Logger): Promise<Indexer> {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const ingestMetrics = new IngestMetrics(registry);
    const scoringMetrics = new ScoringMetrics(registry);
    const apiMetrics = new ApiMetrics(registry);
    if (config.replication.index === 'follow') throw new ConfigError('replication.index "follow" is not supported by the indexer yet (it dials the pods itself); use publish, so EPP replicas can follow it, or off');
    const replication = config.replication.natsUrl === undefined ? null : await Replication.start(config.replication, { registry, logger: logger.child({ component: 'replication' }) });
    const publish = replication !== null && config.replication.index === 'publish';
    const stack = createIndexStack(config.index, ingestMetrics, { logger: logger.child({ component: 'index' }), ...(publish ? { applierIndex: (backend) => replication.publishTo(backend) } : {}) });
    const ingestor = new Ingestor({ config: config.ingest, applier: stack.applier, metrics: ingestMetrics, logger: logger.child({ component: 'ingest' }), backend: stack.status });
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
      isKnownPod: (pod) => ingestor.hasPod(pod),
      metrics: scoringMetrics,
      analytics,
      previewChars: config.analytics.prefixPreviewChars,
      logger: logger.child({ component: 'scoring' }),
    });
    const indexer = new Indexer(config, stack, ingestor, scorer, analytics, tokenizers, logger, replication);
    try {
      indexer.http = buildHttpServer({
        scorer,
        stack,
        ingestor,
        analytics,
        ingestMetrics,
        apiMetrics,
        registry,
        readiness: () => indexer.readiness(),
        topPrefixes: config.analytics.topPrefixes,
        logger: logger.child({ component: 'http' }),
      });
      // Probes answer while ingestion catches up (readyz says 503 until then).
      await indexer.http.listen({ host: config.http.host, port: config.http.port }).catch((err: Error) => {
        throw new Error(`cannot listen for HTTP on ${config.http.host}:${config.http.port}: ${err.message}`, { cause: err });
      });
      indexer.grpc = await startGrpcServer({ scorer, stack, ingestor, metrics: apiMetrics, logger: logger.child({ component: 'grpc' }) }, config.grpc);
      if (publish) await replication.startPublishing();
      await ingestor.start();
      await tokenizers.warmUpServed(ingestor.podStates().map((p) => p.model), (model, err) => logger.warn({ model, err: err.message }, 'no tokenizer for a model the pods serve: its prompts are scored only when sent as token ids'));
      indexer.tokenizersReady = true;
    } catch (err) {
      await indexer.stop();
      throw err;
    }
    void ingestor.whenReady().then(() => {
      if (indexer.stopping) return;
      for (const s of HEALTH_SERVICES) indexer.grpc?.health.setStatus(s, 'SERVING');
      logger.info('indexer ready');
    });
    logger.info({ http: indexer.httpUrl, grpcPort: indexer.grpcPort, mode: config.ingest.mode, endpointsFile: config.ingest.endpointsFile ?? null, blockSize: config.index.blockSize }, 'indexer started');
    return indexer;
  }

  readiness(): { ready: boolean; detail: Record<string, unknown> } {
    const pods = this.ingestor.podStates();
    const replication = this.replication ? this.replication.ready() : true;
    const ready = this.ingestor.ready && this.tokenizersReady && replication && this.stopping === null;
    return { ready, detail: { ingestion: this.ingestor.ready, tokenizers: this.tokenizersReady, replication, pods: pods.length, connected: pods.filter((p) => p.connected).length } };
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
      await Promise.allSettled([this.http?.close(), this.grpc?.stop(Math.max(100, this.config.shutdownTimeoutMs / 2))]);
      await this.ingestor.stop();
      await this.replication?.close();
      await this.tokenizers.close();
      await this.stack.index.close();
      this.logger.info('indexer stopped');
    })();
    return this.stopping;
  }
}
