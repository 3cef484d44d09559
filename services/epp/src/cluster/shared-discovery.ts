import type { KubernetesRuntime, PoolResourcesState } from '@kvix/kubernetes';
import type { DiscoveryHub } from '@kvix/kv-ingest';
import { DataLayerMetrics, EndpointRegistry, metricsDataSource, parsePickerConfig, SchedulerError, type ScrapeOutcome } from '@kvix/scheduler';
import { ConfigError } from '@kvix/service-kit';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { EppConfig } from '../config.js';
import { createEppDiscovery, followPool } from '../discovery.js';
import type { PrimaryMessage } from './messages.js';
import { TurnBatch } from './turn-batch.js';

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
  private poolFollow: { stop(): Promise<void> } | null = null;
  private poolResources: PoolResourcesState | null = null;
  private readonly endpoints: EndpointRegistry;
  /** Scrapes of this event-loop turn, told together at its end. */
  private readonly scrapes: TurnBatch<{ id: string; outcome: ScrapeOutcome }>;
  /** Each discovered endpoint's last scrape, as the workers were told it. */
  private readonly lastScrape = new Map<string, ScrapeOutcome>();

  private constructor(
    private readonly config: EppConfig,
    private readonly kube: KubernetesRuntime | null,
    readonly hub: DiscoveryHub,
    registry: Registry,
    private readonly logger: Logger,
    /** Sends a message to every worker that asked for discovery. */
    private readonly tell: (m: PrimaryMessage) => void,
  ) {
    this.scrapes = new TurnBatch((scrapes) => tell({ kvix: 'scrapes', scrapes }));
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
        this.scrapes.push({ id, outcome });
      },
    });
  }

  /** Resolves once every source delivered its first snapshot and the pool's resources in place are known. */
  static async start(config: EppConfig, deps: { registry: Registry; logger: Logger; tell: (m: PrimaryMessage) => void }): Promise<SharedDiscovery> {
    const { kube, hub } = await createEppDiscovery(config, deps);
    const shared = new SharedDiscovery(config, kube, hub, deps.registry, deps.logger, deps.tell);
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
    this.poolFollow = await followPool(this.kube, {
      config: this.config,
      hub,
      logger: this.logger,
      apply: (resources) => {
        this.poolResources = resources;
        this.tell({ kvix: 'pool-resources', resources });
      },
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
}
