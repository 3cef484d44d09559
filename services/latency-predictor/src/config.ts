import { BuiltinModelConfigSchema } from '@kvix/latency-predictor';
import { addDeprecatedAlias, envLayer, flagLayer, httpListenerFields, integerArg, LOG_LEVELS, numberArg, resolveConfig, type Binding, type ListenerSpec } from '@kvix/service-kit';
import { Option, type Command } from 'commander';
import { z } from 'zod';

/**
 * Not llm-d's 8000 (its training server; prediction servers from 8001): that is a vLLM pod's port,
 * and kvix's defaults never collide (docs/CONVENTIONS.md). llm-d's layout: --http-port 8000 --prediction-port 8001.
 */
export const DEFAULT_PORT = 8070;
/** Loopback unless a deployment says otherwise (--http-host 0.0.0.0). */
export const DEFAULT_HOST = '127.0.0.1';

const port = z.number().int().min(0).max(65535);

export const PredictorServiceConfigSchema = z
  .object({
    logLevel: z.enum(LOG_LEVELS).default('info'),
    /** The training API, and the prediction API as well unless predictionPort is set. */
    http: z
      .object({
        host: z.string().min(1).default(DEFAULT_HOST),
        port: port.default(DEFAULT_PORT),
        // 10,000 rows of ~350 bytes: bulk bodies can be a few MB. TLS and the token cover both listeners.
        ...httpListenerFields({ maxBodyBytes: 16 * 1024 * 1024 }),
      })
      .strict()
      .prefault({}),
    /** Serve the prediction API on its own port (llm-d's sidecar layout); null: one port for both. */
    predictionPort: port.nullable().default(null),
    model: BuiltinModelConfigSchema.prefault({}),
    shutdownTimeoutMs: z.number().int().min(100).default(10_000),
  })
  .strict()
  .refine((c) => c.predictionPort === null || c.predictionPort === 0 || c.predictionPort !== c.http.port, { message: 'predictionPort must differ from http.port (leave it unset to serve both APIs on one port)', path: ['predictionPort'] });

export type PredictorServiceConfig = z.output<typeof PredictorServiceConfigSchema>;
export type PredictorServiceConfigInput = z.input<typeof PredictorServiceConfigSchema>;

export const ENV_BINDINGS: Readonly<Record<string, Binding>> = {
  KVIX_LOG_LEVEL: { path: 'logLevel' },
  KVIX_HTTP_HOST: { path: 'http.host' },
  KVIX_HTTP_PORT: { path: 'http.port', as: 'number' },
  KVIX_PREDICTION_PORT: { path: 'predictionPort', as: 'number' },
  KVIX_HTTP_TLS_CERT: { path: 'http.tls.certFile' },
  KVIX_HTTP_TLS_KEY: { path: 'http.tls.keyFile' },
  KVIX_HTTP_TLS_CLIENT_CA: { path: 'http.tls.clientCaFile' },
  KVIX_HTTP_AUTH_TOKEN_FILE: { path: 'http.authTokenFile' },
  KVIX_MODEL_MIN_SAMPLES: { path: 'model.minSamples', as: 'number' },
  // llm-d's training-server names for the objective, so a ConfigMap carries over.
  LATENCY_OBJECTIVE_TYPE: { path: 'model.objective' },
  LATENCY_QUANTILE_ALPHA: { path: 'model.quantile', as: 'number' },
};

const FLAG_BINDINGS: Readonly<Record<string, string>> = {
  logLevel: 'logLevel',
  httpHost: 'http.host',
  httpPort: 'http.port',
  // Deprecated names (before the --<listener>-host/-port convention).
  host: 'http.host',
  port: 'http.port',
  predictionPort: 'predictionPort',
  httpTlsCert: 'http.tls.certFile',
  httpTlsKey: 'http.tls.keyFile',
  httpTlsClientCa: 'http.tls.clientCaFile',
  httpAuthTokenFile: 'http.authTokenFile',
  objective: 'model.objective',
  quantile: 'model.quantile',
  minSamples: 'model.minSamples',
  forgetting: 'model.forgetting',
};

export function addServiceOptions(cmd: Command): Command {
  cmd
    .option('--config <file>', 'YAML file with any of the settings (see README); the environment and flags override it')
    .option('--http-host <host>', 'listen address (0.0.0.0: every interface)', DEFAULT_HOST)
    .option('--http-port <port>', 'training API, and prediction API unless --prediction-port (0: any free port)', integerArg, DEFAULT_PORT);
  addDeprecatedAlias(cmd, '--host <host>', '--http-host');
  addDeprecatedAlias(cmd, '--port <port>', '--http-port', integerArg);
  return cmd
    .option('--prediction-port <port>', 'serve the prediction API on its own port, like llm-d\'s sidecars (KVIX_PREDICTION_PORT)', integerArg)
    .option('--http-tls-cert <file>', 'serve over TLS with this certificate (PEM)')
    .option('--http-tls-key <file>', 'key of --http-tls-cert (PEM)')
    .option('--http-tls-client-ca <file>', 'require client certificates signed by this CA')
    .option('--http-auth-token-file <file>', 'require Authorization: Bearer <token from file> (probes excepted); EPPs send it with --latency-auth-token-file')
    .addOption(new Option('--objective <objective>', 'predict a quantile of the latency or its mean (LATENCY_OBJECTIVE_TYPE)').choices(['quantile', 'mean']).default('quantile'))
    .option('--quantile <q>', 'the quantile predicted, 0..1 exclusive (LATENCY_QUANTILE_ALPHA)', numberArg, 0.9)
    .option('--min-samples <n>', 'observations before the model answers (503 until then)', integerArg, 20)
    .option('--forgetting <f>', 'weight of the past per observation; 0.999 remembers ~1000', numberArg, 0.999)
    .addOption(new Option('--log-level <level>', 'log level').choices([...LOG_LEVELS]).default('info'))
    .option('--print-config', 'print the resolved configuration as JSON and exit');
}

/** Defaults < config file < environment < flags, validated into one object. */
export function resolveServiceConfig(cmd: Command, env: NodeJS.ProcessEnv = process.env): PredictorServiceConfig {
  const file = (cmd.opts() as { config?: string }).config ?? env['KVIX_CONFIG'];
  return resolveConfig('latency-predictor', PredictorServiceConfigSchema, { file, env: envLayer(env, ENV_BINDINGS), flags: flagLayer(cmd, FLAG_BINDINGS) });
}

/** The ports this service will listen on, checked before anything starts. */
export function serviceListeners(config: PredictorServiceConfig): ListenerSpec[] {
  return [
    { name: 'HTTP (training and prediction API)', flag: '--http-port', host: config.http.host, port: config.http.port },
    ...(config.predictionPort !== null ? [{ name: 'prediction API', flag: '--prediction-port', host: config.http.host, port: config.predictionPort }] : []),
  ];
}
