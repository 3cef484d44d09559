import { addReplicationOptions, REPLICATION_ENV_BINDINGS, REPLICATION_FLAG_BINDINGS, ReplicationSettingsSchema } from '@kvix/replication';
import { addKubernetesOptions, KUBERNETES_ENV_BINDINGS, KUBERNETES_FLAG_BINDINGS, KubernetesSettingsSchema, targetPortsFromStrings } from '@kvix/kubernetes';
import { addIngestionOptions, IndexSettingsSchema, ingestionListener, IngestConfigSchema, INGESTION_ENV_BINDINGS, INGESTION_FLAG_BINDINGS, podsFromAddresses } from '@kvix/kv-ingest';
import { ConfigError, envLayer, flagLayer, httpListenerFields, integerArg, LOG_LEVELS, resolveConfig, type Binding, type ListenerSpec } from '@kvix/service-kit';
import { Option, type Command } from 'commander';
import { z } from 'zod';

export const DEFAULT_HTTP_PORT = 9100;
/** Loopback unless a deployment says otherwise (--http-host 0.0.0.0). */
export const DEFAULT_HOST = '127.0.0.1';

export const KvEventsServiceConfigSchema = z
  .object({
    logLevel: z.enum(LOG_LEVELS).default('info'),
    /** Metrics, probes and the debug API. */
    http: z
      .object({
        host: z.string().min(1).default(DEFAULT_HOST),
        port: z.number().int().min(0).max(65535).default(DEFAULT_HTTP_PORT),
        ...httpListenerFields({ maxBodyBytes: 1024 * 1024, maxConnections: 256 }),
      })
      .strict()
      .prefault({}),
    /** Serve POST /debug/lookup and GET /debug/pods/:pod/entries, which reveal what the index holds (see SECURITY.md). */
    debugRoutes: z.boolean().default(false),
    index: IndexSettingsSchema.prefault({}),
    ingest: IngestConfigSchema.prefault({}),
    /** Pods from the Kubernetes API (an InferencePool, or a label selector). */
    kubernetes: KubernetesSettingsSchema.prefault({}),
    /** With a NATS URL, every index operation applied here is published for router replicas to follow. */
    replication: ReplicationSettingsSchema.prefault({}),
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
  KVIX_HTTP_TLS_CERT: { path: 'http.tls.certFile' },
  KVIX_HTTP_TLS_KEY: { path: 'http.tls.keyFile' },
  KVIX_HTTP_TLS_CLIENT_CA: { path: 'http.tls.clientCaFile' },
  KVIX_HTTP_AUTH_TOKEN_FILE: { path: 'http.authTokenFile' },
  KVIX_DEBUG_ROUTES: { path: 'debugRoutes', as: 'boolean' },
  ...INGESTION_ENV_BINDINGS,
  ...KUBERNETES_ENV_BINDINGS,
  ...REPLICATION_ENV_BINDINGS,
};

const FLAG_BINDINGS: Readonly<Record<string, string>> = {
  logLevel: 'logLevel',
  httpHost: 'http.host',
  httpPort: 'http.port',
  httpTlsCert: 'http.tls.certFile',
  httpTlsKey: 'http.tls.keyFile',
  httpTlsClientCa: 'http.tls.clientCaFile',
  httpAuthTokenFile: 'http.authTokenFile',
  debugRoutes: 'debugRoutes',
  ...INGESTION_FLAG_BINDINGS,
  ...KUBERNETES_FLAG_BINDINGS,
  ...REPLICATION_FLAG_BINDINGS,
};

export function addServiceOptions(cmd: Command): Command {
  cmd.option('--config <file>', 'YAML file with any of the settings (see README); the environment and flags override it');
  return addReplicationOptions(addKubernetesOptions(addIngestionOptions(cmd)))
    .option('--http-host <host>', 'listen address of metrics, probes and debug API (0.0.0.0: every interface)', DEFAULT_HOST)
    .option('--http-port <port>', 'port of metrics, probes and debug API (0: any free port)', integerArg, DEFAULT_HTTP_PORT)
    .option('--http-tls-cert <file>', 'serve HTTP over TLS with this certificate (PEM)')
    .option('--http-tls-key <file>', 'key of --http-tls-cert (PEM)')
    .option('--http-tls-client-ca <file>', 'require HTTP client certificates signed by this CA')
    .option('--http-auth-token-file <file>', 'require Authorization: Bearer <token from file> on HTTP (probes excepted)')
    .option('--debug-routes', 'serve POST /debug/lookup and GET /debug/pods/:pod/entries (see SECURITY.md)')
    .addOption(new Option('--log-level <level>', 'log level').choices([...LOG_LEVELS]).default('info'))
    .option('--print-config', 'print the resolved configuration as JSON and exit');
}

/** Defaults < config file < environment < flags, validated into one object. */
export function resolveServiceConfig(cmd: Command, env: NodeJS.ProcessEnv = process.env): KvEventsServiceConfig {
  const file = (cmd.opts() as { config?: string }).config ?? env['KVIX_CONFIG'];
  const envValues = envLayer(env, ENV_BINDINGS);
  const flags = flagLayer(cmd, FLAG_BINDINGS);
  podsFromAddresses(envValues);
  podsFromAddresses(flags);
  targetPortsFromStrings(envValues);
  targetPortsFromStrings(flags);
  const config = resolveConfig('kv-events', KvEventsServiceConfigSchema, { file, env: envValues, flags });
  // This service is the ingestion side of a replicated deployment: with NATS it publishes.
  // (Not on Redis: there the index itself is what every replica shares.)
  if (config.replication.natsUrl !== undefined && config.replication.index === 'off' && config.index.backend !== 'redis') config.replication.index = 'publish';
  if (config.replication.index === 'follow') throw new ConfigError('replication.index "follow" makes no sense for the kv-events service, which ingests pods itself; use publish (or leave it unset)');
  return config;
}

/** The ports this service will listen on, checked before anything starts. */
export function serviceListeners(config: KvEventsServiceConfig): ListenerSpec[] {
  const central = ingestionListener(config.ingest);
  return [{ name: 'HTTP (metrics, debug API)', flag: '--http-port', host: config.http.host, port: config.http.port }, ...(central ? [central] : [])];
}
