import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { addKubernetesOptions, KUBERNETES_ENV_BINDINGS, KUBERNETES_FLAG_BINDINGS, KubernetesSettingsSchema, parsePoolRef, targetPortsFromStrings } from '@kvix/kubernetes';
import { addIngestionOptions, IndexSettingsSchema, IngestConfigSchema, INGESTION_ENV_BINDINGS, INGESTION_FLAG_BINDINGS, podsFromAddresses } from '@kvix/kv-ingest';
import { DEFAULT_PICKER_CONFIG } from '@kvix/scheduler';
import { addReplicationOptions, indexRole, REPLICATION_ENV_BINDINGS, REPLICATION_FLAG_BINDINGS, ReplicationSettingsSchema, type IndexReplicationMode } from '@kvix/replication';
import { ConfigError, envLayer, flagLayer, httpListenerFields, integerArg, LOG_LEVELS, numberArg, resolveConfig, setPath, TlsServerSchema, type Binding, type ListenerSpec } from '@kvix/service-kit';
import { TOKENIZATION_ENV_BINDINGS, TOKENIZATION_FLAG_BINDINGS, TokenizationConfigSchema } from '@kvix/tokenization';
import { Option, type Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { EppLatencyPredictorSchema } from './latency.js';

export const DEFAULT_GATEWAY_PORT = 8080;
export const DEFAULT_EXT_PROC_PORT = 9002;
export const DEFAULT_METRICS_PORT = 9090;
/** Loopback unless a deployment says otherwise (deploy manifests pass --<listener>-host 0.0.0.0). */
export const DEFAULT_HOST = '127.0.0.1';

function omitAuth<T extends { authTokenFile: unknown }>(fields: T): Omit<T, 'authTokenFile'> {
  const { authTokenFile: _token, ...rest } = fields;
  return rest;
}

export const EppConfigSchema = z
  .object({
    logLevel: z.enum(LOG_LEVELS).default('info'),
    /** InferencePool name in pool metrics (default: the name of kubernetes.inferencePool, else kvix). */
    poolName: z.string().min(1).optional(),
    /** The OpenAI-compatible HTTP gateway (for setups without Envoy). */
    gateway: z
      .object({
        enabled: z.boolean().default(true),
        host: z.string().min(1).default(DEFAULT_HOST),
        port: z.number().int().min(0).max(65535).default(DEFAULT_GATEWAY_PORT),
        /** Time to connect to an endpoint before trying the next one. */
        connectTimeoutMs: z.number().int().min(10).default(2000),
        // Limits and TLS (no token: the gateway forwards clients' own Authorization to vLLM).
        ...omitAuth(httpListenerFields({ maxBodyBytes: 4 * 1024 * 1024, maxConnections: 4096 })),
        /** Request body bytes held at once across all requests; new requests get 503 beyond it. */
        maxBufferedBytes: z.number().int().min(1024).default(256 * 1024 * 1024),
      })
      .strict()
      .prefault({}),
    /** The Envoy External Processor (gRPC). */
    extProc: z
      .object({
        enabled: z.boolean().default(true),
        host: z.string().min(1).default(DEFAULT_HOST),
        port: z.number().int().min(0).max(65535).default(DEFAULT_EXT_PROC_PORT),
        /** Server certificate and key; with clientCaFile, Envoy must present a certificate that CA signed. */
        tls: TlsServerSchema.optional(),
        /** Streams (requests) one connection may have open at once. */
        maxConcurrentStreams: z.number().int().min(1).default(1024),
      })
      .strict()
      .prefault({}),
    /** /metrics, /healthz, /readyz and the debug API. */
    metrics: z
      .object({
        host: z.string().min(1).default(DEFAULT_HOST),
        port: z.number().int().min(0).max(65535).default(DEFAULT_METRICS_PORT),
        ...httpListenerFields({ maxBodyBytes: 1024 * 1024, maxConnections: 256 }),
      })
      .strict()
      .prefault({}),
    /**
     * Serve the debug routes that reveal what the index holds for any text (POST /debug/score
     * confirms guesses about other users' prompts): off unless enabled. See SECURITY.md.
     */
    debugRoutes: z.boolean().default(false),
    /** An EndpointPickerConfig (llm-d's shape); the reference precise-prefix profile by default. */
    scheduler: z.record(z.string(), z.unknown()).default(DEFAULT_PICKER_CONFIG as Record<string, unknown>),
    /** Keep the block index in this process (ingest every pod's events); false when a remote indexer scores. */
    embeddedIndex: z.boolean().default(true),
    /**
     * Dial the pods' KV events into the index. False when another process writes a shared index
     * (a kv-events publisher on Redis); a replica following the index stream never dials them.
     */
    kvEvents: z.boolean().default(true),
    index: IndexSettingsSchema.prefault({}),
    ingest: IngestConfigSchema.prefault({}),
    /** Pods (and the pool's InferenceModelRewrite/InferenceObjective resources) from the Kubernetes API. */
    kubernetes: KubernetesSettingsSchema.prefault({}),
    tokenization: TokenizationConfigSchema.prefault({}),
    /** Active-active replicas: the index stream, shared speculation and in-flight load over NATS. */
    replication: ReplicationSettingsSchema.prefault({}),
    /** Predicted-latency routing for requests with SLO headers: the built-in model, or llm-d's predictor servers. */
    latencyPredictor: EppLatencyPredictorSchema.prefault({}),
    /** Cache-reuse analytics on the metrics port (/v1/analytics, and the /ui page charting them), with the embedded index. */
    analytics: z
      .object({
        /** Shared prefixes listed by /v1/analytics. */
        topPrefixes: z.number().int().min(1).max(1000).default(20),
        /** How often /ui's history samples the analytics (ms). */
        historyIntervalMs: z.number().int().min(100).default(5000),
        /** Samples kept (720 at 5 s: the last hour). */
        historyPoints: z.number().int().min(2).max(100_000).default(720),
      })
      .strict()
      .prefault({}),
    /** Discovery label that marks an endpoint draining (no new requests). */
    drainingLabel: z.string().min(1).default('kvix.io/draining'),
    shutdownTimeoutMs: z.number().int().min(100).default(10_000),
    /**
     * Processes routing requests on this machine: 1 is one process doing everything; above 1, a
     * primary ingests KV events into the one index and N workers (sharing the listening ports)
     * follow it and route. `auto`: one per core beside the primary's (cores - 1, at least 1).
     */
    routingWorkers: z.preprocess(
      (v) => (typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : v),
      z.union([z.literal('auto'), z.number().int().min(1).max(256)], { error: 'must be a whole number from 1 to 256, or auto' }),
    ).default(1),
  })
  .strict();

export type EppConfig = z.output<typeof EppConfigSchema>;
export type EppConfigInput = z.input<typeof EppConfigSchema>;

export const ENV_BINDINGS: Readonly<Record<string, Binding>> = {
  KVIX_LOG_LEVEL: { path: 'logLevel' },
  KVIX_POOL_NAME: { path: 'poolName' },
  KVIX_GATEWAY_HOST: { path: 'gateway.host' },
  KVIX_GATEWAY_PORT: { path: 'gateway.port', as: 'number' },
  KVIX_EXT_PROC_HOST: { path: 'extProc.host' },
  KVIX_EXT_PROC_PORT: { path: 'extProc.port', as: 'number' },
  KVIX_METRICS_HOST: { path: 'metrics.host' },
  KVIX_METRICS_PORT: { path: 'metrics.port', as: 'number' },
  KVIX_ROUTING_WORKERS: { path: 'routingWorkers' },
  KVIX_GATEWAY_MAX_BODY_BYTES: { path: 'gateway.maxBodyBytes', as: 'number' },
  KVIX_EXT_PROC_TLS_CERT: { path: 'extProc.tls.certFile' },
  KVIX_EXT_PROC_TLS_KEY: { path: 'extProc.tls.keyFile' },
  KVIX_EXT_PROC_TLS_CLIENT_CA: { path: 'extProc.tls.clientCaFile' },
  KVIX_METRICS_TLS_CERT: { path: 'metrics.tls.certFile' },
  KVIX_METRICS_TLS_KEY: { path: 'metrics.tls.keyFile' },
  KVIX_METRICS_TLS_CLIENT_CA: { path: 'metrics.tls.clientCaFile' },
  KVIX_METRICS_AUTH_TOKEN_FILE: { path: 'metrics.authTokenFile' },
  KVIX_DEBUG_ROUTES: { path: 'debugRoutes', as: 'boolean' },
  KVIX_LATENCY_TRAINING_URL: { path: 'latencyPredictor.trainingUrl' },
  KVIX_LATENCY_TIMEOUT_MS: { path: 'latencyPredictor.timeoutMs', as: 'number' },
  KVIX_LATENCY_AUTH_TOKEN_FILE: { path: 'latencyPredictor.authTokenFile' },
  KVIX_LATENCY_COALESCE_WINDOW_MS: { path: 'latencyPredictor.coalesceWindowMs', as: 'number' },
  // llm-d's names, so an EPP deployment's predictor settings carry over.
  PREDICTION_SERVER_URL: { path: 'latencyPredictor.predictionUrls', as: 'list' },
  TRAINING_SERVER_URL: { path: 'latencyPredictor.trainingUrl' },
  ...TOKENIZATION_ENV_BINDINGS,
  ...INGESTION_ENV_BINDINGS,
  ...KUBERNETES_ENV_BINDINGS,
  ...REPLICATION_ENV_BINDINGS,
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
  routingWorkers: 'routingWorkers',
  gatewayMaxBodyBytes: 'gateway.maxBodyBytes',
  extProcTlsCert: 'extProc.tls.certFile',
  extProcTlsKey: 'extProc.tls.keyFile',
  extProcTlsClientCa: 'extProc.tls.clientCaFile',
  metricsTlsCert: 'metrics.tls.certFile',
  metricsTlsKey: 'metrics.tls.keyFile',
  metricsTlsClientCa: 'metrics.tls.clientCaFile',
  metricsAuthTokenFile: 'metrics.authTokenFile',
  debugRoutes: 'debugRoutes',
  latencyTrainingUrl: 'latencyPredictor.trainingUrl',
  latencyTimeoutMs: 'latencyPredictor.timeoutMs',
  latencyAuthTokenFile: 'latencyPredictor.authTokenFile',
  latencyCoalesceWindowMs: 'latencyPredictor.coalesceWindowMs',
  ...TOKENIZATION_FLAG_BINDINGS,
  ...INGESTION_FLAG_BINDINGS,
  ...KUBERNETES_FLAG_BINDINGS,
  ...REPLICATION_FLAG_BINDINGS,
};

export function addEppOptions(cmd: Command): Command {
  cmd.option('--config <file>', 'YAML file with any of the settings (see README); the environment and flags override it');
  return addReplicationOptions(addKubernetesOptions(addIngestionOptions(cmd)))
    .option('--scheduler-config <file>', 'an EndpointPickerConfig YAML (llm-d shape) replacing the default profile (KVIX_SCHEDULER_CONFIG)')
    .option('--indexer <host:port>', 'score prefixes with a remote kvix indexer instead of an embedded index')
    .option('--gateway-host <host>', 'gateway listen address (0.0.0.0: every interface)', DEFAULT_HOST)
    .option('--gateway-port <port>', 'gateway port (0: any free port)', integerArg, DEFAULT_GATEWAY_PORT)
    .option('--no-gateway', 'do not serve the HTTP gateway')
    .option('--ext-proc-host <host>', 'ext_proc listen address (0.0.0.0: every interface)', DEFAULT_HOST)
    .option('--ext-proc-port <port>', 'ext_proc gRPC port (0: any free port)', integerArg, DEFAULT_EXT_PROC_PORT)
    .option('--no-ext-proc', 'do not serve the Envoy External Processor')
    .option('--no-kv-events', 'do not dial the pods\' KV events: another process writes the shared (Redis) index')
    .option('--metrics-host <host>', 'metrics and debug listen address (0.0.0.0: every interface)', DEFAULT_HOST)
    .option('--metrics-port <port>', 'metrics, probes and debug API port (0: any free port)', integerArg, DEFAULT_METRICS_PORT)
    .option('--pool-name <name>', 'InferencePool name in metrics (default: the --inference-pool name, else kvix)')
    .option('--tokenizer-workers <n>', 'tokenization threads (0: on the event loop)', integerArg)
    .option('--routing-workers <n|auto>', 'routing processes sharing the ports, fed by one primary process that ingests the KV events (1: one process does everything; auto: cores - 1) (KVIX_ROUTING_WORKERS)')
    .option('--max-prompt-tokens <n>', 'longest prompt tokenized for scoring, in tokens (longer: routed without prefix scores)', integerArg)
    .option('--tokenize-timeout-ms <ms>', 'deadline of one tokenization; past it the request is routed on the other scorers (default 1000)', integerArg)
    .option('--trust-request-chat-template', 'route requests carrying their own chat_template (refused with 400 otherwise, as vLLM does); they render on a thread of their own, under the deadline')
    .option('--gateway-max-body-bytes <n>', 'largest request body the gateway accepts (default 4 MiB; more limits in the config file)', integerArg)
    .option('--ext-proc-tls-cert <file>', 'ext_proc server certificate (PEM); with --ext-proc-tls-key, ext_proc speaks TLS')
    .option('--ext-proc-tls-key <file>', 'ext_proc server key (PEM)')
    .option('--ext-proc-tls-client-ca <file>', 'require client certificates signed by this CA on ext_proc (mutual TLS)')
    .option('--metrics-tls-cert <file>', 'serve the metrics/debug port over HTTPS with this certificate (PEM)')
    .option('--metrics-tls-key <file>', 'key of --metrics-tls-cert (PEM)')
    .option('--metrics-tls-client-ca <file>', 'require client certificates signed by this CA on the metrics port')
    .option('--metrics-auth-token-file <file>', 'require Authorization: Bearer <token from file> on the metrics port (probes excepted)')
    .option('--debug-routes', 'serve POST /debug/score, which reveals what the index holds for any text (see SECURITY.md)')
    .option('--indexer-tls-ca <file>', 'verify the remote indexer (--indexer) over TLS against this CA (PEM)')
    .option('--indexer-tls-cert <file>', 'client certificate for the remote indexer (mutual TLS)')
    .option('--indexer-tls-key <file>', 'key of --indexer-tls-cert')
    .option('--indexer-tls-server-name <name>', 'the name the indexer\'s certificate carries, when it differs from --indexer\'s host')
    .option('--latency-predictor <builtin|off|urls>', 'route requests with SLO headers on predicted latency: builtin (model in this process) or prediction server URLs, comma-separated (KVIX_LATENCY_PREDICTOR; llm-d: PREDICTION_SERVER_URL)')
    .option('--latency-training-url <url>', 'training server of the latency predictor (default: the first prediction URL; llm-d: TRAINING_SERVER_URL)')
    .option('--latency-timeout-ms <ms>', 'budget of one prediction HTTP call before retrying or falling back to the built-in model', integerArg, 250)
    .option('--latency-auth-token-file <file>', 'bearer token the predictor servers require (kvix-latency-predictor --http-auth-token-file)')
    .option('--latency-coalesce-window-ms <ms>', 'concurrent routing decisions within this window share one bulk prediction call (0: none)', numberArg, 1)
    .addOption(new Option('--log-level <level>', 'log level').choices([...LOG_LEVELS]).default('info'))
    .option('--print-config', 'print the resolved configuration as JSON and exit');
}

/** Defaults < config file < environment < flags; a scheduler config file replaces `scheduler`. */
export function resolveEppConfig(cmd: Command, env: NodeJS.ProcessEnv = process.env): EppConfig {
  const opts = cmd.opts() as { config?: string; schedulerConfig?: string; indexer?: string; gateway?: boolean; extProc?: boolean; latencyPredictor?: string; kvEvents?: boolean; indexerTlsCa?: string; indexerTlsCert?: string; indexerTlsKey?: string; indexerTlsServerName?: string };
  const file = opts.config ?? env['KVIX_CONFIG'];
  const envValues = envLayer(env, ENV_BINDINGS);
  const flags = flagLayer(cmd, FLAG_BINDINGS);
  podsFromAddresses(envValues);
  podsFromAddresses(flags);
  targetPortsFromStrings(envValues);
  targetPortsFromStrings(flags);
  const schedulerFile = opts.schedulerConfig ?? env['KVIX_SCHEDULER_CONFIG'];
  if (schedulerFile !== undefined) setPath(flags, 'scheduler', readSchedulerFile(schedulerFile));
  if (opts.gateway === false) setPath(flags, 'gateway.enabled', false);
  latencyPredictorChoice(envValues, env['KVIX_LATENCY_PREDICTOR'], 'KVIX_LATENCY_PREDICTOR');
  latencyPredictorChoice(flags, opts.latencyPredictor, '--latency-predictor');
  if (opts.extProc === false) setPath(flags, 'extProc.enabled', false);
  if (opts.kvEvents === false) setPath(flags, 'kvEvents', false);
  const config = resolveConfig('epp', EppConfigSchema, { file, env: envValues, flags });
  // Pool metrics carry the InferencePool's name, as GAIE's EPP reports them, unless told otherwise.
  config.poolName ??= config.kubernetes.inferencePool !== undefined ? parsePoolRef(config.kubernetes.inferencePool).name : 'kvix';
  const tls = { caFile: opts.indexerTlsCa, certFile: opts.indexerTlsCert, keyFile: opts.indexerTlsKey, serverName: opts.indexerTlsServerName };
  const withTls = Object.values(tls).some((v) => v !== undefined);
  if (withTls && opts.indexer === undefined) throw new ConfigError('--indexer-tls-* set without --indexer: they configure the connection to a remote indexer');
  if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) throw new ConfigError('--indexer-tls-cert and --indexer-tls-key go together');
  if (opts.indexer !== undefined) {
    config.scheduler = withRemoteIndexer(config.scheduler, opts.indexer, withTls ? Object.fromEntries(Object.entries(tls).filter((e): e is [string, string] => e[1] !== undefined)) : undefined);
    config.embeddedIndex = false;
  }
  return config;
}

/** `builtin`, `off`, or prediction server URLs (comma-separated) into the latencyPredictor section. */
function latencyPredictorChoice(layer: Record<string, unknown>, value: string | undefined, source: string): void {
  if (value === undefined || value.trim() === '') return;
  const v = value.trim();
  if (v === 'builtin') setPath(layer, 'latencyPredictor.enabled', true);
  else if (v === 'off') {
    setPath(layer, 'latencyPredictor.enabled', false);
    setPath(layer, 'latencyPredictor.predictionUrls', []);
  } else if (v.split(',').every((u) => /^https?:\/\//.test(u.trim()))) {
    setPath(layer, 'latencyPredictor.enabled', true);
    setPath(layer, 'latencyPredictor.predictionUrls', v.split(',').map((u) => u.trim()).filter((u) => u !== ''));
  } else throw new ConfigError(`${source} must be builtin, off, or prediction server URLs (http://…, comma-separated), got ${JSON.stringify(value)}`);
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
function withRemoteIndexer(scheduler: Record<string, unknown>, indexer: string, tls: Record<string, string> | undefined): Record<string, unknown> {
  const plugins = Array.isArray(scheduler['plugins']) ? (scheduler['plugins'] as Record<string, unknown>[]) : [];
  return {
    ...scheduler,
    plugins: plugins.map((p) => (p['type'] === 'precise-prefix-cache-scorer' ? { ...p, parameters: { ...((p['parameters'] as Record<string, unknown> | undefined) ?? {}), indexer, ...(tls ? { tls } : {}) } } : p)),
  };
}

/** The ports this EPP will listen on, checked before anything starts. */
export function eppListeners(config: EppConfig): ListenerSpec[] {
  const out: ListenerSpec[] = [];
  if (config.gateway.enabled) out.push({ name: 'gateway', flag: '--gateway-port', host: config.gateway.host, port: config.gateway.port });
  if (config.extProc.enabled) out.push({ name: 'ext_proc', flag: '--ext-proc-port', host: config.extProc.host, port: config.extProc.port });
  out.push({ name: 'metrics', flag: '--metrics-port', host: config.metrics.host, port: config.metrics.port });
  return out;
}

/**
 * What this EPP does with the replicated index (`--nats-url`: publish, follow or off) and whether it
 * dials the pods' KV events, checked against the rest of the configuration.
 */
export function replicationRole(config: EppConfig): { mode: IndexReplicationMode; ingests: boolean } {
  const role = indexRole(config.replication, config.index.backend, config.kvEvents);
  if (role.mode !== 'off' && !config.embeddedIndex) {
    throw new ConfigError(`replication.index "${role.mode}" replicates the embedded index, but this EPP scores with a remote indexer (--indexer); set it to off`);
  }
  return role;
}

/** How many worker processes `routingWorkers` asks for (`auto`: one per core but one, at least one). */
export function workerCount(config: EppConfig, cores: number = availableParallelism()): number {
  return config.routingWorkers === 'auto' ? Math.max(1, cores - 1) : config.routingWorkers;
}
