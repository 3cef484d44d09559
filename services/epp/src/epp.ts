import { createDiscoverySources, createIndexStack, DiscoveryHub, IngestMetrics, Ingestor, type IndexStack } from '@kvix/kv-ingest';
import { createRouter, RouterMetrics, SchedulerError, type DirectorObserver, type Router } from '@kvix/scheduler';
import { ConfigError } from '@kvix/service-kit';
import { PrefixScorer, ReuseAnalytics, ScoringMetrics } from '@kvix/scoring';
import { ModelTokenizers } from '@kvix/tokenization';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { EppConfig } from './config.js';
import { startExtProcServer, type RunningExtProc } from './extproc/server.js';
import { Gateway } from './gateway/gateway.js';
import { buildOpsServer } from './ops.js';

/**
 * The endpoint picker: discovery, (by default) an embedded block index fed by every pod's KV
 * events, the scheduler, and the fronts that carry requests to it — Envoy's ext_proc and the
 * HTTP gateway — plus metrics and probes.
 */
export class Epp {
  private stopping: Promise<void> | null = null;
  gateway: Gateway | null = null;
  extProc: RunningExtProc | null = null;
  private ops: FastifyInstance | null = null;

  private constructor(
    readonly config: EppConfig,
    readonly router: Router,
    readonly hub: DiscoveryHub,
    readonly ingestor: Ingestor | null,
    readonly stack: IndexStack | null,
    private readonly tokenizers: ModelTokenizers | null,
    private readonly logger: Logger,
  ) {}

  /** `observer` sees every routing decision (benchmarks measure decision latency with it). */
  static async start(config: EppConfig, logger: Logger, options: { observer?: DirectorObserver } = {}): Promise<Epp> {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const routerMetrics = new RouterMetrics(registry);
    const hub = new DiscoveryHub(createDiscoverySources(config.ingest, logger));
    let ingestor: Ingestor | null = null;
    let stack: IndexStack | null = null;
    let tokenizers: ModelTokenizers | null = null;
    let prefixScorer: PrefixScorer | null = null;
    if (config.embeddedIndex) {
      const ingestMetrics = new IngestMetrics(registry);
      const scoringMetrics = new ScoringMetrics(registry);
      stack = createIndexStack(config.index, ingestMetrics);
      ingestor = new Ingestor({ config: config.ingest, applier: stack.applier, metrics: ingestMetrics, logger: logger.child({ component: 'ingest' }), discovery: [hub.asSource()] });
      tokenizers = new ModelTokenizers(config.tokenization, { observer: scoringMetrics.tokenizationObserver() });
      prefixScorer = new PrefixScorer({
        index: stack.index,
        hasher: stack.hasher,
        weights: stack.weights,
        tokenizer: tokenizers,
        maxPromptTokens: config.tokenization.maxPromptTokens,
        isKnownPod: (pod) => ingestor!.hasPod(pod),
        metrics: scoringMetrics,
        analytics: new ReuseAnalytics(config.index.blockSize, scoringMetrics),
        logger: logger.child({ component: 'scoring' }),
      });
    }
    let router: Router;
    try {
      router = await createRouter({ config: config.scheduler, discovery: hub, prefixScorer, metrics: routerMetrics, poolName: config.poolName, drainingLabel: config.drainingLabel, logger: logger.child({ component: 'scheduler' }), ...(options.observer ? { observer: options.observer } : {}) });
    } catch (err) {
      await Promise.allSettled([hub.stop(), tokenizers?.close(), stack?.index.close()]);
      // A scheduler configuration mistake is a configuration error like any other (exit 2, one line).
      if (err instanceof SchedulerError) throw new ConfigError(err.message);
      throw err;
    }
    const epp = new Epp(config, router, hub, ingestor, stack, tokenizers, logger);
    try {
      epp.ops = buildOpsServer({ registry, router, ingestor, stack, readiness: () => epp.readiness() });
      await epp.ops.listen({ host: config.metrics.host, port: config.metrics.port }).catch((err: Error) => {
        throw new Error(`cannot listen for metrics on ${config.metrics.host}:${config.metrics.port}: ${err.message}`, { cause: err });
      });
      if (ingestor) await ingestor.start();
      if (tokenizers) await tokenizers.warmUpServed(hub.targets.map((t) => t.model), (model, err) => logger.warn({ model, err: err.message }, 'no tokenizer for a model the pods serve: its prompts are routed on load only'));
      if (config.extProc.enabled) epp.extProc = await startExtProcServer({ director: router.director, logger: logger.child({ component: 'ext-proc' }) }, { ...config.extProc, maxBodyBytes: config.gateway.maxBodyBytes });
      if (config.gateway.enabled) epp.gateway = await Gateway.start({ ...config.gateway, director: router.director, logger: logger.child({ component: 'gateway' }) });
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
        endpoints: router.registry.size,
      },
      'epp started',
    );
    return epp;
  }

  get metricsPort(): number {
    const addr = this.ops?.server.address();
    return typeof addr === 'object' && addr !== null ? addr.port : this.config.metrics.port;
  }

  readiness(): { ready: boolean; detail: Record<string, unknown> } {
    const candidates = this.router.registry.candidates().length;
    const ingestion = this.ingestor ? this.ingestor.ready : true;
    return { ready: this.stopping === null && ingestion && candidates > 0, detail: { ingestion, endpoints: this.router.registry.size, candidates } };
  }

  /** Health turns NOT_SERVING, the fronts drain (half the shutdown budget), then everything stops. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const grace = Math.max(100, this.config.shutdownTimeoutMs / 2);
      this.extProc?.setServing(false);
      await Promise.allSettled([this.gateway?.close(grace), this.extProc?.stop(grace)]);
      await this.ops?.close();
      await this.router.close();
      await this.ingestor?.stop();
      await this.hub.stop();
      await this.tokenizers?.close();
      await this.stack?.index.close();
      this.logger.info('epp stopped');
    })();
    return this.stopping;
  }
}
