import { IndexSettingsSchema, IngestConfigSchema } from '@kvix/kv-ingest';
import { ConfigError, LOG_LEVELS, collectArg, envLayer, flagLayer, integerArg, resolveConfig, type Binding } from '@kvix/service-kit';
import { Option, type Command } from 'commander';
import { z } from 'zod';

export const DEFAULT_HTTP_PORT = 9100;

export const KvEventsServiceConfigSchema = z
  .object({
    logLevel: z.enum(LOG_LEVELS).default('info'),
    /** Metrics, probes and the debug API. */
    http: z
      .object({ host: z.string().min(1).default('0.0.0.0'), port: z.number().int().min(0).max(65535).default(DEFAULT_HTTP_PORT) })
      .strict()
      .prefault({}),
    index: IndexSettingsSchema.prefault({}),
    ingest: IngestConfigSchema.prefault({}),
    /** How long SIGTERM may take before the process exits anyway. */
    shutdownTimeoutMs: z.number().int().min(100).default(10_000),
  })
  .strict();

export type KvEventsServiceConfig = z.output<typeof KvEventsServiceConfigSchema>;
export type KvEventsServiceConfigInput = z.input<typeof KvEventsServiceConfigSchema>;

/** Environment variables, for deployments that configure by env (a ConfigMap file is the other way). */
export const ENV_BINDINGS: Readonly<Record<string, Binding>> = {
  KVIX_LOG_LEVEL: { path: 'logLevel' },
  KVIX_HTTP_HOST: { path: 'http.host' },
  KVIX_HTTP_PORT: { path: 'http.port', as: 'number' },
  KVIX_BLOCK_SIZE: { path: 'index.blockSize', as: 'number' },
  KVIX_HASH_SEED: { path: 'index.hashSeed' },
  KVIX_MAX_ENTRIES: { path: 'index.maxEntries', as: 'number' },
  KVIX_KV_EVENTS_MODE: { path: 'ingest.mode' },
  KVIX_CENTRALIZED_ENDPOINT: { path: 'ingest.centralizedEndpoint' },
  KVIX_TOPIC_PREFIX: { path: 'ingest.topicPrefix' },
  KVIX_ENDPOINTS_FILE: { path: 'ingest.endpointsFile' },
  KVIX_PODS: { path: 'ingest.pods', as: 'list' },
  KVIX_EVENT_PORT: { path: 'ingest.defaultEventPort', as: 'number' },
  KVIX_REPLAY_PORT: { path: 'ingest.defaultReplayPort', as: 'number' },
  KVIX_MODEL: { path: 'ingest.defaultModel' },
  KVIX_WORKERS: { path: 'ingest.workers', as: 'number' },
};

const FLAG_BINDINGS: Readonly<Record<string, string>> = {
  logLevel: 'logLevel',
  httpHost: 'http.host',
  httpPort: 'http.port',
  blockSize: 'index.blockSize',
  hashSeed: 'index.hashSeed',
  hashAlgorithm: 'index.algorithm',
  maxEntries: 'index.maxEntries',
  mode: 'ingest.mode',
  centralizedEndpoint: 'ingest.centralizedEndpoint',
  topicPrefix: 'ingest.topicPrefix',
  endpointsFile: 'ingest.endpointsFile',
  pod: 'ingest.pods',
  eventPort: 'ingest.defaultEventPort',
  replayPort: 'ingest.defaultReplayPort',
  model: 'ingest.defaultModel',
  workers: 'ingest.workers',
  maxQueuePerPod: 'ingest.maxQueuePerPod',
};

export function addServiceOptions(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'YAML file with any of the settings (see README); the environment and flags override it')
    .option('--endpoints-file <file>', 'endpoints file listing the pods, reloaded when replaced (KVIX_ENDPOINTS_FILE)')
    .option('--pod <host:port>', 'a pod\'s serving address; repeatable or comma-separated (KVIX_PODS)', collectArg)
    .option('--event-port <port>', 'KV-event port of pods that do not name one', integerArg, 5557)
    .option('--replay-port <port>', 'replay port of pods that do not name one (default: no replay)', integerArg)
    .option('--model <name>', 'model of pods whose entry and topic do not name one', 'Qwen/Qwen3-0.6B')
    .addOption(new Option('--mode <mode>', 'per-pod: dial every pod; centralized: bind one socket pods connect to').choices(['per-pod', 'centralized']).default('per-pod'))
    .option('--centralized-endpoint <endpoint>', 'address bound in centralized mode', 'tcp://*:5557')
    .option('--topic-prefix <prefix>', 'topic prefix subscribed to ("" for every topic)', 'kv@')
    .option('--workers <n>', 'lanes pods are spread over', integerArg, 4)
    .option('--max-queue-per-pod <n>', 'batches queued per pod before its backlog is dropped and replayed', integerArg, 10_000)
    .option('--block-size <n>', 'tokens per request key (the routers\' block size, not the engines\')', integerArg, 16)
    .option('--hash-seed <seed>', 'request-key seed (llm-d\'s hashSeed)', '')
    .addOption(new Option('--hash-algorithm <algo>', 'request-key algorithm').choices(['cbor-fnv', 'xxh64']).default('cbor-fnv'))
    .option('--max-entries <n>', 'most (key, pod) entries held', integerArg)
    .option('--http-host <host>', 'listen address of metrics, probes and debug API', '0.0.0.0')
    .option('--http-port <port>', 'port of metrics, probes and debug API (0: any free port)', integerArg, DEFAULT_HTTP_PORT)
    .addOption(new Option('--log-level <level>', 'log level').choices([...LOG_LEVELS]).default('info'))
    .option('--print-config', 'print the resolved configuration as JSON and exit');
}

/** Defaults < config file < environment < flags, validated into one object. */
export function resolveServiceConfig(cmd: Command, env: NodeJS.ProcessEnv = process.env): KvEventsServiceConfig {
  const file = (cmd.opts() as { config?: string }).config ?? env['KVIX_CONFIG'];
  const envValues = envLayer(env, ENV_BINDINGS);
  const flags = flagLayer(cmd, FLAG_BINDINGS);
  for (const layer of [envValues, flags]) {
    const ingest = layer['ingest'] as { pods?: unknown } | undefined;
    if (ingest?.pods !== undefined) ingest.pods = (ingest.pods as string[]).map(podFromAddress);
  }
  return resolveConfig('kv-events', KvEventsServiceConfigSchema, { file, env: envValues, flags });
}

/** `host:port` or `[v6]:port` → an endpoints entry named after its address. */
export function podFromAddress(text: string): { name: string; address: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) throw new ConfigError(`pod ${JSON.stringify(text)} is not host:port`);
  return { name: text, address: (m[1] ?? m[2])!, port };
}
