import { readFileSync } from 'node:fs';
import { addIngestionOptions, IndexSettingsSchema, IngestConfigSchema, INGESTION_ENV_BINDINGS, INGESTION_FLAG_BINDINGS, podsFromAddresses } from '@kvix/kv-ingest';
import { DEFAULT_PICKER_CONFIG } from '@kvix/scheduler';
import { ConfigError, envLayer, flagLayer, integerArg, LOG_LEVELS, resolveConfig, setPath, type Binding } from '@kvix/service-kit';
import { TokenizationConfigSchema } from '@kvix/tokenization';
import { Option, type Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

export const DEFAULT_GATEWAY_PORT = 8080;
export const DEFAULT_EXT_PROC_PORT = 9002;
export const DEFAULT_METRICS_PORT = 9090;

const listener = (port: number) =>
  z
    .object({ enabled: z.boolean().default(true), host: z.string().min(1).default('0.0.0.0'), port: z.number().int().min(0).max(65535).default(port) })
    .strict()
    .prefault({});

export const EppConfigSchema = z
  .object({
    logLevel: z.enum(LOG_LEVELS).default('info'),
    /** InferencePool name in pool metrics. */
    poolName: z.string().min(1).default('kvix'),
    /** The OpenAI-compatible HTTP gateway (for setups without Envoy). */
    gateway: z
      .object({
        enabled: z.boolean().default(true),
        host: z.string().min(1).default('0.0.0.0'),
        port: z.number().int().min(0).max(65535).default(DEFAULT_GATEWAY_PORT),
        /** Largest request body accepted. */
        maxBodyBytes: z.number().int().min(1024).default(32 * 1024 * 1024),
        /** Time to connect to an endpoint before trying the next one. */
        connectTimeoutMs: z.number().int().min(10).default(2000),
      })
      .strict()
      .prefault({}),
    /** The Envoy External Processor (gRPC). */
    extProc: listener(DEFAULT_EXT_PROC_PORT),
    /** /metrics, /healthz, /readyz and the debug API. */
    metrics: z
      .object({ host: z.string().min(1).default('0.0.0.0'), port: z.number().int().min(0).max(65535).default(DEFAULT_METRICS_PORT) })
      .strict()
      .prefault({}),
    /** An EndpointPickerConfig (llm-d's shape); the reference precise-prefix profile by default. */
    scheduler: z.record(z.string(), z.unknown()).default(DEFAULT_PICKER_CONFIG as Record<string, unknown>),
    /** Keep the block index in this process (ingest every pod's events); false when a remote indexer scores. */
    embeddedIndex: z.boolean().default(true),
    index: IndexSettingsSchema.prefault({}),
    ingest: IngestConfigSchema.prefault({}),
    tokenization: TokenizationConfigSchema.prefault({}),
    /** Discovery label that marks an endpoint draining (no new requests). */
    drainingLabel: z.string().min(1).default('kvix.io/draining'),
    shutdownTimeoutMs: z.number().int().min(100).default(10_000),
  })
  .strict();

export type EppConfig = z.output<typeof EppConfigSchema>;
export type EppConfigInput = z.input<typeof EppConfigSchema>;

export const ENV_BINDINGS: Readonly<Record<string, Binding>> = {
  KVIX_LOG_LEVEL: { path: 'logLevel' },
  KVIX_POOL_NAME: { path: 'poolName' },
  KVIX_GATEWAY_PORT: { path: 'gateway.port', as: 'number' },
  KVIX_EXT_PROC_PORT: { path: 'extProc.port', as: 'number' },
  KVIX_METRICS_PORT: { path: 'metrics.port', as: 'number' },
  KVIX_TOKENIZER_WORKERS: { path: 'tokenization.workers', as: 'number' },
  ...INGESTION_ENV_BINDINGS,
};

const FLAG_BINDINGS: Readonly<Record<string, string>> = {
  logLevel: 'logLevel',
  poolName: 'poolName',
  gatewayHost: 'gateway.host',
  gatewayPort: 'gateway.port',
  extProcHost: 'extProc.host',
  extProcPort: 'extProc.port',
  metricsHost: 'metrics.host',
  metricsPort: 'metrics.port',
  tokenizerWorkers: 'tokenization.workers',
  ...INGESTION_FLAG_BINDINGS,
};

export function addEppOptions(cmd: Command): Command {
  cmd.option('--config <file>', 'YAML file with any of the settings (see README); the environment and flags override it');
  return addIngestionOptions(cmd)
    .option('--scheduler-config <file>', 'an EndpointPickerConfig YAML (llm-d shape) replacing the default profile (KVIX_SCHEDULER_CONFIG)')
    .option('--indexer <host:port>', 'score prefixes with a remote kvix indexer instead of an embedded index')
    .option('--gateway-host <host>', 'gateway listen address', '0.0.0.0')
    .option('--gateway-port <port>', 'gateway port (0: any free port)', integerArg, DEFAULT_GATEWAY_PORT)
    .option('--no-gateway', 'do not serve the HTTP gateway')
    .option('--ext-proc-host <host>', 'ext_proc listen address', '0.0.0.0')
    .option('--ext-proc-port <port>', 'ext_proc gRPC port (0: any free port)', integerArg, DEFAULT_EXT_PROC_PORT)
    .option('--no-ext-proc', 'do not serve the Envoy External Processor')
    .option('--metrics-host <host>', 'metrics and debug listen address', '0.0.0.0')
    .option('--metrics-port <port>', 'metrics, probes and debug API port (0: any free port)', integerArg, DEFAULT_METRICS_PORT)
    .option('--pool-name <name>', 'InferencePool name in metrics', 'kvix')
    .option('--tokenizer-workers <n>', 'tokenization threads (0: on the event loop)', integerArg)
    .addOption(new Option('--log-level <level>', 'log level').choices([...LOG_LEVELS]).default('info'))
    .option('--print-config', 'print the resolved configuration as JSON and exit');
}

/** Defaults < config file < environment < flags; a scheduler config file replaces `scheduler`. */
export function resolveEppConfig(cmd: Command, env: NodeJS.ProcessEnv = process.env): EppConfig {
  const opts = cmd.opts() as { config?: string; schedulerConfig?: string; indexer?: string; gateway?: boolean; extProc?: boolean };
  const file = opts.config ?? env['KVIX_CONFIG'];
  const envValues = envLayer(env, ENV_BINDINGS);
  const flags = flagLayer(cmd, FLAG_BINDINGS);
  podsFromAddresses(envValues);
  podsFromAddresses(flags);
  const schedulerFile = opts.schedulerConfig ?? env['KVIX_SCHEDULER_CONFIG'];
  if (schedulerFile !== undefined) setPath(flags, 'scheduler', readSchedulerFile(schedulerFile));
  if (opts.gateway === false) setPath(flags, 'gateway.enabled', false);
  if (opts.extProc === false) setPath(flags, 'extProc.enabled', false);
  const config = resolveConfig('epp', EppConfigSchema, { file, env: envValues, flags });
  if (opts.indexer !== undefined) {
    config.scheduler = withRemoteIndexer(config.scheduler, opts.indexer);
    config.embeddedIndex = false;
  }
  return config;
}

function readSchedulerFile(path: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ConfigError(`cannot read scheduler config ${path}: ${(err as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new ConfigError(`scheduler config ${path} must hold an EndpointPickerConfig mapping`);
  return doc as Record<string, unknown>;
}

/** Points every precise prefix scorer of a scheduler config at a remote indexer. */
function withRemoteIndexer(scheduler: Record<string, unknown>, indexer: string): Record<string, unknown> {
  const plugins = Array.isArray(scheduler['plugins']) ? (scheduler['plugins'] as Record<string, unknown>[]) : [];
  return {
    ...scheduler,
    plugins: plugins.map((p) => (p['type'] === 'precise-prefix-cache-scorer' ? { ...p, parameters: { ...((p['parameters'] as Record<string, unknown> | undefined) ?? {}), indexer } } : p)),
  };
}
