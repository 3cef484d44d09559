import { Replication } from '@kvix/replication';
import { createKubernetesRuntime, KubernetesError } from '@kvix/kubernetes';
import { createDiscoverySources, createIndexStack, IngestMetrics, Ingestor, type IndexStack } from '@kvix/kv-ingest';
import { ConfigError } from '@kvix/service-kit';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { KvEventsServiceConfig } from './config.js';
import { buildHttpServer } from './http.js';

/**
 * KV-event ingestion as a process of its own: the index it keeps is served by the debug API.
 * The same pieces are what the indexer and the EPP embed.
 */
export class KvEventsService {
  private stopping: Promise<void> | null = null;

  private constructor(
    readonly config: KvEventsServiceConfig,
    readonly stack: IndexStack,
    readonly ingestor: Ingestor,
    private readonly http: FastifyInstance,
    private readonly logger: Logger,
    readonly replication: Replication | null,
  ) {}

  static async start(config: KvEventsServiceConfig, logger: Logger): Promise<KvEventsService> {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const metrics = new IngestMetrics(registry);
    let kube: Awaited<ReturnType<typeof createKubernetesRuntime>>;
    try {
      kube = await createKubernetesRuntime(config.kubernetes, config.ingest, { registry, logger });
    } catch (err) {
      if (err instanceof KubernetesError && err.code === 'KUBECONFIG') throw new ConfigError(err.message);
      throw err;
    }
    const replication = config.replication.natsUrl === undefined ? null : await Replication.start(config.replication, { registry, logger: logger.child({ component: 'replication' }) });
    const stack = createIndexStack(config.index, metrics, { logger: logger.child({ component: 'index' }), ...(replication ? { applierIndex: (backend) => replication.publishTo(backend) } : {}) });
    const ingestor = new Ingestor({ config: config.ingest, applier: stack.applier, metrics, logger: logger.child({ component: 'ingest' }), backend: stack.status, ...(kube ? { discovery: [...createDiscoverySources(config.ingest, logger), kube.discovery] } : {}) });
    const http = buildHttpServer({ stack, ingestor, registry, replication, listener: config.http, debugRoutes: config.debugRoutes });
    // Probes answer while discovery and the startup replays run (readyz says 503 until then).
    try {
      await http.listen({ host: config.http.host, port: config.http.port });
    } catch (err) {
      await stack.index.close();
      await replication?.close();
      throw new Error(`cannot listen on ${config.http.host}:${config.http.port}: ${(err as Error).message}`, { cause: err });
    }
    const service = new KvEventsService(config, stack, ingestor, http, logger, replication);
    try {
      // A restarted publisher resumes the shared state (snapshot + stream) before dialing pods.
      await replication?.startPublishing();
      await ingestor.start();
    } catch (err) {
      await service.stop();
      throw err;
    }
    logger.info(
      {
        http: service.url,
        mode: config.ingest.mode,
        endpointsFile: config.ingest.endpointsFile ?? null,
        kubernetes: config.kubernetes.inferencePool ?? config.kubernetes.podSelector ?? null,
        staticPods: config.ingest.pods.length,
        blockSize: config.index.blockSize,
        algorithm: config.index.algorithm,
        replication: replication ? { publish: config.replication.stream, replicaId: config.replication.replicaId } : 'off',
      },
      'kv-events service started',
    );
    return service;
  }

  /** Base URL of the HTTP API (the bound port, when 0 was configured). */
  get url(): string {
    const addr = this.http.server.address();
    const port = typeof addr === 'object' && addr !== null ? addr.port : this.config.http.port;
    const host = this.config.http.host === '0.0.0.0' || this.config.http.host === '::' ? '127.0.0.1' : this.config.http.host;
    return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  }

  /** Stops taking HTTP requests, then stops ingestion and frees the index. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await this.http.close();
      await this.ingestor.stop();
      await this.replication?.close();
      await this.stack.index.close();
      this.logger.info('kv-events service stopped');
    })();
    return this.stopping;
  }
}
