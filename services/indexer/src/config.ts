import { addReplicationOptions, REPLICATION_ENV_BINDINGS, REPLICATION_FLAG_BINDINGS, ReplicationSettingsSchema } from '@kvix/replication';
import { addKubernetesOptions, KUBERNETES_ENV_BINDINGS, KUBERNETES_FLAG_BINDINGS, KubernetesSettingsSchema, targetPortsFromStrings } from '@kvix/kubernetes';
import { addIngestionOptions, IndexSettingsSchema, IngestConfigSchema, INGESTION_ENV_BINDINGS, INGESTION_FLAG_BINDINGS, podsFromAddresses } from '@kvix/kv-ingest';
import { envLayer, flagLayer, httpListenerFields, integerArg, LOG_LEVELS, resolveConfig, setPath, TlsServerSchema, type Binding, type ListenerSpec } from '@kvix/service-kit';
import { TOKENIZATION_ENV_BINDINGS, TOKENIZATION_FLAG_BINDINGS, TokenizationConfigSchema } from '@kvix/tokenization';
import { Option, type Command } from 'commander';
import { z } from 'zod';

export const DEFAULT_HTTP_PORT = 8081;
export const DEFAULT_GRPC_PORT = 50051;
/** Loopback unless a deployment says otherwise (--http-host / --grpc-host 0.0.0.0). */
export const DEFAULT_HOST = '127.0.0.1';


export const IndexerConfigSchema = z
  .object({
    logLevel: z.enum(LOG_LEVELS).default('info'),
    /** HTTP/JSON API, metrics and probes: limits, TLS, bearer token. */
    http: z
      .object({
        host: z.string().min(1).default(DEFAULT_HOST),
        port: z.number().int().min(0).max(65535).default(DEFAULT_HTTP_PORT),
        ...httpListenerFields({ maxBodyBytes: 4 * 1024 * 1024 }),
      })
      .strict()
      .prefault({}),
    /** gRPC: llm-d's indexer.v1, kvix.indexer.v1 and grpc.health.v1. */
    grpc: z
      .object({
        host: z.string().min(1).default(DEFAULT_HOST),
        port: z.number().int().min(0).max(65535).default(DEFAULT_GRPC_PORT),
        maxMessageBytes: z.number().int().min(1024).default(16 * 1024 * 1024),
        /** Calls one connection may have open at once. */
        maxConcurrentStreams: z.number().int().min(1).default(1024),
        /** Server certificate and key; with clientCaFile, clients (EPPs) must present a certificate that CA signed. */
        tls: TlsServerSchema.optional(),
      })
      .strict()
      .prefault({}),
    /**
     * Serve the routes that change the index or dump it: HTTP POST /v1/routing-decisions, GET
     * /v1/pods/:pod/entries and gRPC DumpPod (the EPP's RecordRoutingDecision is served regardless).
     * Off unless enabled; see SECURITY.md.
     */
    debugRoutes: z.boolean().default(false),
    index: IndexSettingsSchema.prefault({}),
    ingest: IngestConfigSchema.prefault({}),
    /** Pods from the Kubernetes API (an InferencePool, or a label selector). */
    kubernetes: KubernetesSettingsSchema.prefault({}),
    tokenization: TokenizationConfigSchema.prefault({}),
    /**
     * Dial the pods' KV events into the index. False when another process writes a shared (Redis)
     * index; a follower of the index stream never dials them.
     */
    kvEvents: z.boolean().default(true),
    /** With NATS: publish the index stream (or follow one), and share routing decisions with EPP replicas. */
    replication: ReplicationSettingsSchema.prefault({}),
    analytics: z
      .object({
        /** Shared prefixes listed by /v1/analytics. */
        topPrefixes: z.number().int().min(1).max(1000).default(20),
        /** Prefixes the heavy-hitter sketch tracks (more = exact further down the list). */
        sketchCapacity: z.number().int().min(16).max(1_000_000).default(4096),
        /** Characters of prompt text shown next to shared prefixes; 0 shows none (prompts may be sensitive). */
        prefixPreviewChars: z.number().int().min(0).max(10_000).default(0),
        /** How often /ui's history samples the analytics (ms). */
        historyIntervalMs: z.number().int().min(100).default(5000),
        /** Samples kept (720 at 5 s: the last hour). */
        historyPoints: z.number().int().min(2).max(100_000).default(720),
      })
      .strict()
      .prefault({}),
    shutdownTimeoutMs: z.number().int().min(100).default(10_000),
  })
  .strict();

export type IndexerConfig = z.output<typeof IndexerConfigSchema>;
export type IndexerConfigInput = z.input<typeof IndexerConfigSchema>;

export const ENV_BINDINGS: Readonly<Record<string, Binding>> = {
  KVIX_LOG_LEVEL: { path: 'logLevel' },
  KVIX_HTTP_HOST: { path: 'http.host' },
  KVIX_HTTP_PORT: { path: 'http.port', as: 'number' },
  KVIX_GRPC_HOST: { path: 'grpc.host' },
  KVIX_GRPC_PORT: { path: 'grpc.port', as: 'number' },
  KVIX_HTTP_MAX_BODY_BYTES: { path: 'http.maxBodyBytes', as: 'number' },
  KVIX_HTTP_TLS_CERT: { path: 'http.tls.certFile' },
  KVIX_HTTP_TLS_KEY: { path: 'http.tls.keyFile' },
  KVIX_HTTP_TLS_CLIENT_CA: { path: 'http.tls.clientCaFile' },
  KVIX_HTTP_AUTH_TOKEN_FILE: { path: 'http.authTokenFile' },
  KVIX_GRPC_TLS_CERT: { path: 'grpc.tls.certFile' },
  KVIX_GRPC_TLS_KEY: { path: 'grpc.tls.keyFile' },
  KVIX_GRPC_TLS_CLIENT_CA: { path: 'grpc.tls.clientCaFile' },
  KVIX_DEBUG_ROUTES: { path: 'debugRoutes', as: 'boolean' },
  ...TOKENIZATION_ENV_BINDINGS,
  ...INGESTION_ENV_BINDINGS,
  ...KUBERNETES_ENV_BINDINGS,
  ...REPLICATION_ENV_BINDINGS,
};

const FLAG_BINDINGS: Readonly<Record<string, string>> = {
  logLevel: 'logLevel',
  httpHost: 'http.host',
  httpPort: 'http.port',
  grpcHost: 'grpc.host',
  grpcPort: 'grpc.port',
  httpMaxBodyBytes: 'http.maxBodyBytes',
  httpTlsCert: 'http.tls.certFile',
  httpTlsKey: 'http.tls.keyFile',
  httpTlsClientCa: 'http.tls.clientCaFile',
  httpAuthTokenFile: 'http.authTokenFile',
  grpcTlsCert: 'grpc.tls.certFile',
  grpcTlsKey: 'grpc.tls.keyFile',
  grpcTlsClientCa: 'grpc.tls.clientCaFile',
  debugRoutes: 'debugRoutes',
  ...TOKENIZATION_FLAG_BINDINGS,
  ...INGESTION_FLAG_BINDINGS,
  ...KUBERNETES_FLAG_BINDINGS,
  ...REPLICATION_FLAG_BINDINGS,
};

export function addIndexerOptions(cmd: Command): Command {
  cmd.option('--config <file>', 'YAML file with any of the settings (see README); the environment and flags override it');
  return addReplicationOptions(addKubernetesOptions(addIngestionOptions(cmd)))
    .option('--no-kv-events', 'do not dial the pods\' KV events: another process writes the shared (Redis) index')
    .option('--render-url <url>', 'tokenize models the config does not list with this vLLM server\'s render endpoints (KVIX_RENDER_URL)')
    .option('--tokenizer-workers <n>', 'tokenization threads (0: on the event loop)', integerArg)
    .option('--max-prompt-tokens <n>', 'longest prompt accepted, in tokens', integerArg)
    .option('--tokenize-timeout-ms <ms>', 'deadline of one tokenization (default 1000); past it the call fails with DEADLINE_EXCEEDED (504)', integerArg)
    .option('--trust-request-chat-template', 'accept prompts carrying their own chat_template (refused with 400 otherwise, as vLLM does)')
    .option('--http-max-body-bytes <n>', 'largest HTTP request body (default 4 MiB; more limits in the config file)', integerArg)
    .option('--http-tls-cert <file>', 'serve HTTP over TLS with this certificate (PEM)')
    .option('--http-tls-key <file>', 'key of --http-tls-cert (PEM)')
    .option('--http-tls-client-ca <file>', 'require HTTP client certificates signed by this CA')
    .option('--http-auth-token-file <file>', 'require Authorization: Bearer <token from file> on HTTP (probes excepted)')
    .option('--grpc-tls-cert <file>', 'serve gRPC over TLS with this certificate (PEM)')
    .option('--grpc-tls-key <file>', 'key of --grpc-tls-cert (PEM)')
    .option('--grpc-tls-client-ca <file>', 'require gRPC client certificates signed by this CA (mutual TLS)')
    .option('--debug-routes', 'serve HTTP POST /v1/routing-decisions, GET /v1/pods/:pod/entries and gRPC DumpPod (see SECURITY.md)')
    .option('--grpc-host <host>', 'gRPC listen address (0.0.0.0: every interface)', DEFAULT_HOST)
    .option('--grpc-port <port>', 'gRPC port (0: any free port)', integerArg, DEFAULT_GRPC_PORT)
    .option('--http-host <host>', 'HTTP listen address (API, metrics, probes; 0.0.0.0: every interface)', DEFAULT_HOST)
    .option('--http-port <port>', 'HTTP port (0: any free port)', integerArg, DEFAULT_HTTP_PORT)
    .addOption(new Option('--log-level <level>', 'log level').choices([...LOG_LEVELS]).default('info'))
    .option('--print-config', 'print the resolved configuration as JSON and exit');
}

/** Defaults < config file < environment < flags, validated into one object. */
export function resolveIndexerConfig(cmd: Command, env: NodeJS.ProcessEnv = process.env): IndexerConfig {
  const opts = cmd.opts() as { config?: string; renderUrl?: string; kvEvents?: boolean };
  const file = opts.config ?? env['KVIX_CONFIG'];
  const envValues = envLayer(env, ENV_BINDINGS);
  const flags = flagLayer(cmd, FLAG_BINDINGS);
  // A render URL replaces the whole `default` tokenizer choice, whichever layer names it.
  if (env['KVIX_RENDER_URL']) setPath(envValues, 'tokenization.default', { render: { url: env['KVIX_RENDER_URL'] } });
  if (opts.renderUrl !== undefined) setPath(flags, 'tokenization.default', { render: { url: opts.renderUrl } });
  if (opts.kvEvents === false) setPath(flags, 'kvEvents', false);
  podsFromAddresses(envValues);
  podsFromAddresses(flags);
  targetPortsFromStrings(envValues);
  targetPortsFromStrings(flags);
  return resolveConfig('indexer', IndexerConfigSchema, { file, env: envValues, flags });
}

/** The ports this indexer will listen on, checked before anything starts. */
export function indexerListeners(config: IndexerConfig): ListenerSpec[] {
  return [
    { name: 'HTTP API', flag: '--http-port', host: config.http.host, port: config.http.port },
    { name: 'gRPC API', flag: '--grpc-port', host: config.grpc.host, port: config.grpc.port },
  ];
}
