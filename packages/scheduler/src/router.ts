import type { DiscoveryHub } from '@kvix/kv-ingest';
import type { PrefixScorer } from '@kvix/scoring';
import type { Logger } from 'pino';
import { EndpointPickerConfigSchema, type EndpointPickerConfig, type EndpointPickerConfigInput } from './config.js';
import { EndpointRegistry } from './datalayer/endpoint-registry.js';
import { RequestDirector, type DirectorObserver } from './director.js';
import { SchedulerError } from './errors.js';
import type { RouterMetrics } from './metrics.js';
import { buildPipeline } from './plugin-registry.js';
import type { LatencyPluginDeps } from './plugins/latency/factories.js';
import { Scheduler } from './scheduler.js';

export interface RouterOptions {
  /** An EndpointPickerConfig (validated here). */
  config: EndpointPickerConfigInput | Record<string, unknown>;
  discovery: DiscoveryHub;
  /** The embedded index's scorer, or null when precise scoring goes to a remote indexer. */
  prefixScorer: PrefixScorer | null;
  metrics: RouterMetrics | null;
  poolName: string;
  /** Discovery label marking an endpoint draining. */
  drainingLabel: string;
  logger: Logger;
  random?: () => number;
  observer?: DirectorObserver;
  /** The latency predictor for predicted-latency plugins (configurations using them fail to build without it). */
  latency?: LatencyPluginDeps | null;
  /**
   * Route chat requests that bring their own chat template (vLLM's --trust-request-chat-template);
   * by default they are refused with 400 before anything renders them.
   */
  trustRequestChatTemplate?: boolean;
  /**
   * `scrape` (default): the registry reads each endpoint's /metrics itself. `external`: another
   * process scrapes and its outcomes are handed to `registry.recordScrape` (`--routing-workers`).
   */
  endpointMetrics?: 'scrape' | 'external';
}

export interface Router {
  director: RequestDirector;
  registry: EndpointRegistry;
  scheduler: Scheduler;
  config: EndpointPickerConfig;
  close(): Promise<void>;
}

/** Validates an EndpointPickerConfig, naming every offending key. */
export function parsePickerConfig(input: unknown): EndpointPickerConfig {
  const r = EndpointPickerConfigSchema.safeParse(input);
  if (!r.success) throw new SchedulerError('INVALID_CONFIG', `invalid scheduler configuration: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  return r.data;
}

/** Everything between a request and its endpoint: discovery-fed registry, scheduler, director. */
export async function createRouter(options: RouterOptions): Promise<Router> {
  const config = parsePickerConfig(options.config);
  const logger = options.logger;
  const pipeline = buildPipeline(config, {
    prefixScorer: options.prefixScorer,
    logger,
    ...(options.metrics ? { onPrefixError: (code: string) => options.metrics!.prefixErrors.inc({ code }) } : {}),
    latency: options.latency ?? null,
  });
  if (pipeline.ignored.length > 0) logger.info({ plugins: pipeline.ignored }, 'llm-d plugins with nothing to do in kvix were accepted and ignored');
  const m = options.metrics;
  const onScrapeError = m ? (kind: 'poll' | 'extract'): void => m.dataLayer.scrapeError(kind) : undefined;
  const registry = new EndpointRegistry({
    ...pipeline.dataSource,
    drainingLabel: options.drainingLabel,
    logger: logger.child({ component: 'endpoints' }),
    ...(onScrapeError ? { onScrapeError } : {}),
    ...(options.endpointMetrics ? { metricsSource: options.endpointMetrics } : {}),
  });
  const scheduler = new Scheduler(pipeline, config.fallbacks, options.metrics);
  const director = new RequestDirector({ registry, scheduler, config, metrics: options.metrics, poolName: options.poolName, logger, trustRequestChatTemplate: options.trustRequestChatTemplate ?? false, ...(options.random ? { random: options.random } : {}), ...(options.observer ? { observer: options.observer } : {}) });
  const unsubscribe = options.discovery.subscribe((targets) => registry.setTargets(targets));
  await options.discovery.start();
  registry.start();
  director.startPoolMetrics();
  logger.info({ ...scheduler.describe(), fallbacks: config.fallbacks, aliases: director.aliases }, 'scheduler configured');
  return {
    director,
    registry,
    scheduler,
    config,
    close: async () => {
      unsubscribe();
      director.stop();
      registry.stop();
      await scheduler.close();
    },
  };
}
