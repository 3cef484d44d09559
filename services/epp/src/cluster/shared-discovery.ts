import { createKubernetesRuntime, KubernetesError, type KubernetesRuntime, type PoolResourcesState } from '@kvix/kubernetes';
import { createDiscoverySources, DiscoveryHub } from '@kvix/kv-ingest';
import { DataLayerMetrics, EndpointRegistry, metricsDataSource, parsePickerConfig, SchedulerError, type ScrapeOutcome } from '@kvix/scheduler';
import { ConfigError } from '@kvix/service-kit';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { EppConfig } from '../config.js';
import type { PrimaryMessage } from './messages.js';

/**
 * Discovery and the endpoints' load as a single EPP process has them, run once in the primary for
 * all its routing workers, which get what it finds as messages (`tell`):
 * - the pods (endpoints file, static list, Kubernetes): N workers each watching the API would cost
 *   the API server N watches;
 * - with an InferencePool, its rewrites and objectives, and the EPP's status and Events on it:
 *   N workers would each write the same status and their own copy of every Event;
 * - every pod's /metrics, read once per interval: N workers each scraping every pod would ask
 *   each model server N times as often (`auto` on a 32-core node: 31×).
 */
export class SharedDiscovery {
  readonly hub: DiscoveryHub;
  private poolFollow: { stop(): Promise<void> } | null = null;
  private poolResources: PoolResourcesState | null = null;
  private readonly endpoints: EndpointRegistry;
  /** Scrapes of this event-loop turn, told together at its end. */
  private scrapes: { id: string; outcome: ScrapeOutcome }[] = [];
  /** Each discovered endpoint's last scrape, as the workers were told it. */
  private readonly lastScrape = new Map<string, ScrapeOutcome>();

  private constructor(
    private readonly config: EppConfig,
    private readonly kube: KubernetesRuntime | null,
    registry: Registry,
    private readonly logger: Logger,
    /** Sends a message to every worker that asked for discovery. */
    private readonly tell: (m: PrimaryMessage) => void,
  ) {
    this.hub = new DiscoveryHub([...createDiscoverySources(config.ingest, logger), ...(kube ? [kube.discovery] : [])]);
    let dataSource: ReturnType<typeof metricsDataSource>;
    try {
      dataSource = metricsDataSource(parsePickerConfig(config.scheduler));
    } catch (err) {
      if (err instanceof SchedulerError) throw new ConfigError(err.message);
      throw err;
    }
    const errors = new DataLayerMetrics(registry);
    this.endpoints = new EndpointRegistry({
      ...dataSource,
      drainingLabel: config.drainingLabel,
      logger: logger.child({ component: 'endpoints' }),
      onScrapeError: (kind) => errors.scrapeError(kind),
      onScraped: (id, outcome) => {
        this.lastScrape.set(id, outcome);
        if (this.scrapes.length === 0) setImmediate(() => this.flushScrapes());
        this.scrapes.push({ id, outcome });
      },
    });
  }

  /** Resolves once every source delivered its first snapshot and the pool's resources in place are known. */
  static async start(config: EppConfig, deps: { registry: Registry; logger: Logger; tell: (m: PrimaryMessage) => void }): Promise<SharedDiscovery> {
    let kube: KubernetesRuntime | null;
    try {
      kube = await createKubernetesRuntime(config.kubernetes, config.ingest, { registry: deps.registry, logger: deps.logger });
    } catch (err) {
      if (err instanceof KubernetesError && err.code === 'KUBECONFIG') throw new ConfigError(err.message);
      throw err;
    }
    const shared = new SharedDiscovery(config, kube, deps.registry, deps.logger, deps.tell);
    await shared.follow();
    return shared;
  }

  private async follow(): Promise<void> {
    const hub = this.hub;
    await hub.start();
    hub.subscribe((targets) => {
      this.tell({ kvix: 'targets', targets: [...targets] });
      // After the targets: a worker records a scrape only for an endpoint it knows.
      this.endpoints.setTargets(targets);
      const ids = new Set(targets.map((t) => t.id));
      for (const id of this.lastScrape.keys()) if (!ids.has(id)) this.lastScrape.delete(id);
    });
    this.endpoints.start();
    if (!this.kube?.pool) return;
    const logger = this.logger.child({ component: 'kubernetes' });
    this.poolFollow = await this.kube.followPool({
      replicaId: this.config.replication.replicaId,
      logger,
      onResources: (resources) => {
        this.poolResources = resources;
        this.tell({ kvix: 'pool-resources', resources });
        logger.info({ rewrites: resources.rewrites.length, objectives: resources.objectives.map((o) => `${o.name}=${o.priority}`) }, 'pool resources applied');
      },
      subscribeTargets: (listener) => hub.subscribe(listener),
    });
  }

  /**
   * What a worker that just asked needs, in order: the pool's resources first (applied before its
   * first snapshot of the pods lets its fronts start), the pods, each pod's last scrape.
   */
  welcome(): PrimaryMessage[] {
    const scrapes: { id: string; outcome: ScrapeOutcome }[] = [];
    for (const t of this.hub.targets) {
      const last = this.lastScrape.get(t.id);
      if (last) scrapes.push({ id: t.id, outcome: last });
    }
    return [...(this.poolResources ? [{ kvix: 'pool-resources' as const, resources: this.poolResources }] : []), { kvix: 'targets', targets: [...this.hub.targets] }, { kvix: 'scrapes', scrapes }];
  }

  async stop(): Promise<void> {
    await this.poolFollow?.stop();
    this.endpoints.stop();
  }

  private flushScrapes(): void {
    const scrapes = this.scrapes;
    this.scrapes = [];
    if (scrapes.length > 0) this.tell({ kvix: 'scrapes', scrapes });
  }
}
