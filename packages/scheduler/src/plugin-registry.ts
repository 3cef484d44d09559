import type { PrefixScorer } from '@kvix/scoring';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { EndpointPickerConfig, PluginSpec } from './config.js';
import type { RegistryOptions } from './datalayer/endpoint-registry.js';
import { SchedulerError } from './errors.js';
import { ApproximatePrefixCacheScorer } from './plugins/approximate-prefix.js';
import { ActiveRequestScorer, KvCacheUtilizationScorer, QueueScorer } from './plugins/load-scorers.js';
import { NoHitLruScorer } from './plugins/no-hit-lru.js';
import { EmbeddedPrefixBackend, PrecisePrefixCacheScorer, type PrefixBackend } from './plugins/precise-prefix.js';
import { DECLARED_ONLY_TYPES, latencyFactories, type LatencyPluginDeps } from './plugins/latency/factories.js';
import { MaxScorePicker, RandomPicker, RoundRobinPicker, WeightedRandomPicker } from './plugins/pickers.js';
import { RemotePrefixBackend } from './plugins/remote-prefix.js';
import { SessionAffinityScorer } from './plugins/session-affinity.js';
import type { Admitter, Filter, Picker, Plugin, Scorer } from './types.js';

export interface PluginDeps {
  /** The embedded index's scorer; null when this process keeps no index (precise scoring must then name a remote indexer). */
  prefixScorer: PrefixScorer | null;
  logger: Logger;
  /** Counts precise-prefix backend failures by code. */
  onPrefixError?: (code: string) => void;
  /** The latency predictor for the predicted-latency plugins; they refuse to build without one. */
  latency?: LatencyPluginDeps | null;
}

export interface Profile {
  name: string;
  /** Run after the producers, before the filters. */
  admitters: Admitter[];
  filters: Filter[];
  scorers: { scorer: Scorer; weight: number }[];
  picker: Picker;
}

export interface Pipeline {
  profile: Profile;
  /** Every instantiated plugin (hooks and close). */
  plugins: Plugin[];
  /** Scrape settings from a metrics-data-source plugin (defaults otherwise). */
  dataSource: Pick<RegistryOptions, 'scheme' | 'path' | 'scrapeIntervalMs' | 'scrapeTimeoutMs' | 'staleAfterMs'>;
  /** Plugins accepted for llm-d compatibility that do nothing here. */
  ignored: string[];
}

type Factory = (name: string, params: unknown, deps: PluginDeps) => Plugin;

const Empty = z.object({}).strict();
const PreciseParams = z
  .object({
    /** host:port of a kvix indexer (kvix.indexer.v1); unset = the embedded index. */
    indexer: z.string().min(1).optional(),
    /** TLS to the indexer (mutual with certFile/keyFile); plaintext without. */
    tls: z
      .object({ caFile: z.string().min(1).optional(), certFile: z.string().min(1).optional(), keyFile: z.string().min(1).optional(), serverName: z.string().min(1).optional() })
      .strict()
      .refine((t) => (t.certFile === undefined) === (t.keyFile === undefined), { message: 'certFile and keyFile go together' })
      .optional(),
    timeoutMs: z.number().int().positive().default(250),
    /** Record speculative entries for every decision (llm-d: speculativeIndexing). */
    speculative: z.boolean().default(true),
    speculativeTtlMs: z.number().int().positive().optional(),
  })
  .strict();

const FACTORIES: Record<string, Factory> = {
  'precise-prefix-cache-scorer': (name, raw, deps) => {
    const p = parse(name, PreciseParams, raw);
    let backend: PrefixBackend;
    if (p.indexer !== undefined) backend = new RemotePrefixBackend(p.indexer, p.timeoutMs, p.tls);
    else if (deps.prefixScorer !== null) backend = new EmbeddedPrefixBackend(deps.prefixScorer);
    else throw new SchedulerError('NO_PREFIX_BACKEND', `plugin ${name}: no embedded index here; set parameters.indexer to a kvix indexer (host:port)`);
    return new PrecisePrefixCacheScorer(name, backend, { speculative: p.speculative, speculativeTtlMs: p.speculativeTtlMs ?? null, logger: deps.logger.child({ plugin: name }), ...(deps.onPrefixError ? { onError: deps.onPrefixError } : {}) });
  },
  'prefix-cache-scorer': (name, raw) => {
    const p = parse(name, z.object({ blockSizeChars: z.number().int().positive().default(256), maxPrefixBlocks: z.number().int().positive().default(256), lruCapacityPerServer: z.number().int().positive().default(31_250) }).strict(), raw);
    return new ApproximatePrefixCacheScorer(name, p);
  },
  'queue-scorer': (name, raw) => new QueueScorer(name, parse(name, z.object({ countInFlight: z.boolean().default(true) }).strict(), raw).countInFlight),
  'kv-cache-utilization-scorer': (name, raw) => (parse(name, Empty, raw), new KvCacheUtilizationScorer(name)),
  'active-request-scorer': (name, raw) => {
    const p = parse(name, z.object({ idleThreshold: z.number().int().min(0).default(0), maxBusyScore: z.number().min(0).max(1).default(1) }).strict(), raw);
    return new ActiveRequestScorer(name, p.idleThreshold, p.maxBusyScore);
  },
  'no-hit-lru-scorer': (name, raw) => {
    const p = parse(name, z.object({ lruSize: z.number().int().positive().default(1024) }).passthrough(), raw);
    return new NoHitLruScorer(name, p.lruSize);
  },
  'session-affinity-scorer': (name, raw) => {
    const p = parse(name, z.object({ sessionHeader: z.string().min(1).default('x-session-token') }).strict(), raw);
    return new SessionAffinityScorer(name, p.sessionHeader.toLowerCase());
  },
  'max-score-picker': (name, raw) => (parse(name, z.object({ maxNumOfEndpoints: z.number().int().positive().optional() }).strict(), raw), new MaxScorePicker(name)),
  'weighted-random-picker': (name, raw) => (parse(name, z.object({ maxNumOfEndpoints: z.number().int().positive().optional() }).strict(), raw), new WeightedRandomPicker(name)),
  'random-picker': (name, raw) => (parse(name, z.object({ maxNumOfEndpoints: z.number().int().positive().optional() }).strict(), raw), new RandomPicker(name)),
  'round-robin-picker': (name, raw) => (parse(name, Empty, raw), new RoundRobinPicker(name)),
  ...latencyFactories(parse),
};

const DataSourceParams = z
  .object({
    scheme: z.enum(['http', 'https']).default('http'),
    path: z.string().startsWith('/').default('/metrics'),
    intervalMs: z.number().int().min(10).default(100),
    timeoutMs: z.number().int().min(10).default(1000),
    staleAfterMs: z.number().int().min(100).default(2000),
    insecureSkipVerify: z.boolean().optional(),
  })
  .strict();

/**
 * llm-d plugin types a pasted llm-d configuration may hold that need nothing here: kvix parses
 * requests itself, runs one profile, and its precise scorer produces its own prefix data.
 */
const COMPATIBLE_NO_OPS = new Set(['single-profile-handler', 'core-metrics-extractor', 'endpoint-notification-source', 'precise-prefix-cache-producer', 'token-producer', 'openai-parser', 'decode-filter']);

export const PLUGIN_TYPES = [...Object.keys(FACTORIES), 'metrics-data-source'];

/** Instantiates the plugins of a configuration and assembles its (first) scheduling profile. */
export function buildPipeline(config: EndpointPickerConfig, deps: PluginDeps): Pipeline {
  const specs = new Map<string, PluginSpec>();
  for (const spec of config.plugins) {
    const name = spec.name ?? spec.type;
    if (specs.has(name)) throw new SchedulerError('INVALID_CONFIG', `two plugins are named ${JSON.stringify(name)}; give one a distinct name`);
    if (!(spec.type in FACTORIES) && spec.type !== 'metrics-data-source' && !COMPATIBLE_NO_OPS.has(spec.type)) {
      throw new SchedulerError('INVALID_CONFIG', `plugin ${JSON.stringify(name)}: unknown type ${JSON.stringify(spec.type)}; kvix supports ${PLUGIN_TYPES.join(', ')}`);
    }
    specs.set(name, spec);
  }
  if (config.schedulingProfiles.length > 1) {
    deps.logger.warn({ profiles: config.schedulingProfiles.map((p) => p.name) }, 'several scheduling profiles configured; kvix runs the first (no prefill/decode split yet)');
  }
  const profileSpec = config.schedulingProfiles[0]!;
  const plugins = new Map<string, Plugin>();
  const instantiate = (name: string): Plugin => {
    let plugin = plugins.get(name);
    if (plugin) return plugin;
    const spec = specs.get(name);
    if (!spec) throw new SchedulerError('INVALID_CONFIG', `profile ${JSON.stringify(profileSpec.name)} refers to plugin ${JSON.stringify(name)}, which is not in plugins`);
    const factory = FACTORIES[spec.type];
    if (!factory) throw new SchedulerError('INVALID_CONFIG', `profile ${JSON.stringify(profileSpec.name)}: plugin ${JSON.stringify(name)} (${spec.type}) cannot be part of a profile`);
    plugin = factory(name, spec.parameters ?? {}, deps);
    plugins.set(name, plugin);
    return plugin;
  };
  const profile: Profile = { name: profileSpec.name, admitters: [], filters: [], scorers: [], picker: null as unknown as Picker };
  const ignored: string[] = [];
  let picker: Picker | null = null;
  for (const ref of profileSpec.plugins) {
    const spec = specs.get(ref.pluginRef);
    if (spec && COMPATIBLE_NO_OPS.has(spec.type)) {
      ignored.push(ref.pluginRef);
      continue;
    }
    const plugin = instantiate(ref.pluginRef);
    if (plugin.kind === 'scorer') profile.scorers.push({ scorer: plugin, weight: ref.weight ?? 1 });
    else if (plugin.kind === 'filter') profile.filters.push(plugin);
    else if (plugin.kind === 'admitter') {
      if (!profile.admitters.includes(plugin)) profile.admitters.push(plugin);
    } else if (plugin.kind === 'producer') continue;
    else {
      if (picker !== null) throw new SchedulerError('INVALID_CONFIG', `profile ${JSON.stringify(profileSpec.name)} has two pickers (${picker.name}, ${plugin.name}); keep one`);
      if (ref.weight !== undefined) throw new SchedulerError('INVALID_CONFIG', `profile ${JSON.stringify(profileSpec.name)}: picker ${plugin.name} takes no weight`);
      picker = plugin;
    }
  }
  profile.picker = picker ?? new MaxScorePicker('max-score-picker');
  for (const spec of specs.values()) {
    if (!DECLARED_ONLY_TYPES.has(spec.type)) continue;
    const plugin = instantiate(spec.name ?? spec.type);
    if (plugin.kind === 'admitter' && !profile.admitters.includes(plugin)) profile.admitters.push(plugin);
  }
  for (const spec of specs.values()) if (COMPATIBLE_NO_OPS.has(spec.type)) ignored.push(spec.name ?? spec.type);
  return { profile, plugins: [...plugins.values()], dataSource: metricsDataSource(config), ignored: [...new Set(ignored)] };
}

/** How a configuration's `metrics-data-source` plugin (or its defaults) reads the endpoints' /metrics. */
export function metricsDataSource(config: EndpointPickerConfig): Pipeline['dataSource'] {
  const dsSpec = config.plugins.find((s) => s.type === 'metrics-data-source');
  const ds = parse(dsSpec?.name ?? 'metrics-data-source', DataSourceParams, dsSpec?.parameters ?? {});
  return { scheme: ds.scheme, path: ds.path, scrapeIntervalMs: ds.intervalMs, scrapeTimeoutMs: ds.timeoutMs, staleAfterMs: ds.staleAfterMs };
}

function parse<T extends z.ZodType>(plugin: string, schema: T, raw: unknown): z.output<T> {
  const r = schema.safeParse(raw ?? {});
  if (!r.success) {
    throw new SchedulerError('INVALID_CONFIG', `plugin ${JSON.stringify(plugin)} parameters: ${r.error.issues.map((i) => `${i.path.join('.') || '(parameters)'}: ${i.message}`).join('; ')}`);
  }
  return r.data;
}
