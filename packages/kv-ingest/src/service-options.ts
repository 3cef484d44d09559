import { ConfigError, collectArg, integerArg, type Binding, type ListenerSpec } from '@kvix/service-kit';
import { Option, type Command } from 'commander';

/**
 * The ingestion and index settings every service embedding ingestion takes from the environment
 * and the command line, under the `ingest` and `index` sections of its configuration.
 */
export const INGESTION_ENV_BINDINGS: Readonly<Record<string, Binding>> = {
  KVIX_BLOCK_SIZE: { path: 'index.blockSize', as: 'number' },
  KVIX_HASH_SEED: { path: 'index.hashSeed' },
  KVIX_MAX_ENTRIES: { path: 'index.maxEntries', as: 'number' },
  KVIX_INDEX_BACKEND: { path: 'index.backend' },
  KVIX_REDIS_URL: { path: 'index.redis.url' },
  KVIX_REDIS_KEY_PREFIX: { path: 'index.redis.keyPrefix' },
  KVIX_KV_EVENTS_MODE: { path: 'ingest.mode' },
  KVIX_CENTRALIZED_ENDPOINT: { path: 'ingest.centralizedEndpoint' },
  KVIX_CURVE_SECRET_KEY_FILE: { path: 'ingest.curve.secretKeyFile' },
  KVIX_CURVE_ALLOWED_KEYS_FILE: { path: 'ingest.curve.allowedKeysFile' },
  KVIX_TOPIC_PREFIX: { path: 'ingest.topicPrefix' },
  KVIX_ENDPOINTS_FILE: { path: 'ingest.endpointsFile' },
  KVIX_PODS: { path: 'ingest.pods', as: 'list' },
  KVIX_EVENT_PORT: { path: 'ingest.defaultEventPort', as: 'number' },
  KVIX_REPLAY_PORT: { path: 'ingest.defaultReplayPort', as: 'number' },
  KVIX_MODEL: { path: 'ingest.defaultModel' },
  KVIX_WORKERS: { path: 'ingest.workers', as: 'number' },
};

export const INGESTION_FLAG_BINDINGS: Readonly<Record<string, string>> = {
  blockSize: 'index.blockSize',
  hashSeed: 'index.hashSeed',
  hashAlgorithm: 'index.algorithm',
  maxEntries: 'index.maxEntries',
  indexBackend: 'index.backend',
  redisUrl: 'index.redis.url',
  redisKeyPrefix: 'index.redis.keyPrefix',
  mode: 'ingest.mode',
  centralizedEndpoint: 'ingest.centralizedEndpoint',
  curveSecretKeyFile: 'ingest.curve.secretKeyFile',
  curveAllowedKeysFile: 'ingest.curve.allowedKeysFile',
  topicPrefix: 'ingest.topicPrefix',
  endpointsFile: 'ingest.endpointsFile',
  pod: 'ingest.pods',
  eventPort: 'ingest.defaultEventPort',
  replayPort: 'ingest.defaultReplayPort',
  model: 'ingest.defaultModel',
  workers: 'ingest.workers',
  maxQueuePerPod: 'ingest.maxQueuePerPod',
  maxSeqJump: 'ingest.maxSeqJump',
  maxBlocksPerEvent: 'index.maxBlocksPerEvent',
  maxTokensPerBlock: 'index.maxTokensPerBlock',
  lmcacheTtlMs: 'index.lmcacheTtlMs',
};

export function addIngestionOptions(cmd: Command): Command {
  return cmd
    .option('--endpoints-file <file>', 'endpoints file listing the pods, reloaded when replaced (KVIX_ENDPOINTS_FILE)')
    .option('--pod <host:port>', 'a pod\'s serving address; repeatable or comma-separated (KVIX_PODS)', collectArg)
    .option('--event-port <port>', 'KV-event port of pods that do not name one', integerArg, 5557)
    .option('--replay-port <port>', 'replay port of pods that do not name one (default: no replay)', integerArg)
    .option('--model <name>', 'model of pods whose entry and topic do not name one', 'Qwen/Qwen3-0.6B')
    .addOption(new Option('--mode <mode>', 'per-pod: dial every pod; centralized: bind one socket pods connect to').choices(['per-pod', 'centralized']).default('per-pod'))
    .option('--centralized-endpoint <endpoint>', 'address bound in centralized mode (tcp://*:5557: every interface)', 'tcp://127.0.0.1:5557')
    .option('--curve-secret-key-file <file>', 'centralized mode: require CURVE, with this server secret key (Z85, or a zcert secret file)')
    .option('--curve-allowed-keys-file <file>', 'centralized mode: the publishers\' CURVE public keys admitted, one per line (others are refused)')
    .option('--topic-prefix <prefix>', 'topic prefix subscribed to ("" for every topic)', 'kv@')
    .option('--workers <n>', 'lanes pods are spread over', integerArg, 4)
    .option('--max-queue-per-pod <n>', 'batches queued per pod before its backlog is dropped and replayed', integerArg, 10_000)
    .option('--max-seq-jump <n>', 'a larger jump of a pod\'s sequence is a restart, not lost batches (default 1000000)', integerArg)
    .option('--max-blocks-per-event <n>', 'a batch with an event of more hashes is refused whole and counted (default 65536)', integerArg)
    .option('--max-tokens-per-block <n>', 'a batch with an engine block of more tokens is refused whole and counted (default 65536)', integerArg)
    .option('--lmcache-ttl-ms <ms>', 'LMCache in-process entries (never removed by events) expire this long after their last announcement; 0: never (default 3600000)', integerArg)
    .option('--block-size <n>', 'tokens per request key (the routers\' block size, not the engines\')', integerArg, 16)
    .option('--hash-seed <seed>', 'request-key seed (llm-d\'s hashSeed)', '')
    .addOption(new Option('--hash-algorithm <algo>', 'request-key algorithm').choices(['cbor-fnv', 'xxh64']).default('cbor-fnv'))
    .option('--max-entries <n>', 'most (key, pod) entries held', integerArg)
    .addOption(new Option('--index-backend <backend>', 'memory: this process\'s own index; redis: a shared Redis/Valkey (default: redis when a Redis URL is set) (KVIX_INDEX_BACKEND)').choices(['memory', 'redis']))
    .option('--redis-url <url>', 'Redis/Valkey holding the index in llm-d\'s schema: redis://[user:pass@]host:port/db, rediss://…, unix:///path.sock; selects the redis backend (KVIX_REDIS_URL)')
    .option('--redis-key-prefix <prefix>', 'prefix of every index key in Redis (default none: llm-d\'s exact schema) (KVIX_REDIS_KEY_PREFIX)');
}

/** Turns `host:port` strings (flags, KVIX_PODS) in a layer into endpoints entries, in place. */
export function podsFromAddresses(layer: Record<string, unknown>): void {
  const ingest = layer['ingest'] as { pods?: unknown } | undefined;
  if (ingest?.pods !== undefined) ingest.pods = (ingest.pods as string[]).map(podFromAddress);
}

/** `host:port` or `[v6]:port` → an endpoints entry named after its address. */
export function podFromAddress(text: string): { name: string; address: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) throw new ConfigError(`pod ${JSON.stringify(text)} is not host:port`);
  return { name: text, address: (m[1] ?? m[2])!, port };
}

/**
 * The TCP port ingestion binds, if any (centralized mode), so a service can check it with its own
 * before starting; null in per-pod mode (it only dials) or for ipc:// endpoints.
 */
export function ingestionListener(ingest: { mode: string; centralizedEndpoint: string }): ListenerSpec | null {
  if (ingest.mode !== 'centralized') return null;
  const m = /^tcp:\/\/(.+):(\d+)$/.exec(ingest.centralizedEndpoint);
  if (!m) return null;
  const host = m[1] === '*' ? '0.0.0.0' : m[1]!.replace(/^\[(.*)\]$/, '$1');
  return { name: 'centralized KV events', flag: '--centralized-endpoint', host, port: Number(m[2]) };
}
