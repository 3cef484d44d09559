import { readFileSync } from 'node:fs';
import { ENGINE_HASH_ALGORITHMS, type EngineHashAlgorithm } from '@kvix/block-keys';
import { Option, type Command } from 'commander';
export { explicitFlags } from '@kvix/service-kit';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { DEFAULT_LATENCY } from './engine/latency.js';
import { parseKvEventsConfig, type KvEventsConfig } from './events/kv-events-config.js';

const loraModuleObject = z
  .object({ name: z.string().min(1), path: z.string().min(1), base_model_name: z.string().min(1).nullish(), is_3d_lora_weight: z.boolean().optional() })
  .strict();

export interface LoraModuleConfig {
  name: string;
  path: string;
  /** vLLM's `base_model_name`; null: the first served model name. */
  baseModelName: string | null;
}

/**
 * A LoRA module as vLLM's --lora-modules takes it: `name=path` when the item has a `=` and no
 * comma, otherwise a JSON object `{"name", "path", "base_model_name"?}` (vLLM's rule, so the same
 * command line works on both). A YAML config file may give the object directly.
 */
const loraModule = z.unknown().transform((value, ctx): LoraModuleConfig => {
  let raw = value;
  if (typeof value === 'string') {
    if (value.includes('=') && !value.includes(',')) {
      const parts = value.split('=');
      if (parts.length === 2 && /^\S+$/.test(parts[0]!) && /^\S+$/.test(parts[1]!)) return { name: parts[0]!, path: parts[1]!, baseModelName: null };
      ctx.addIssue({ code: 'custom', message: `expected name=path, got ${JSON.stringify(value)}` });
      return z.NEVER;
    }
    try {
      raw = JSON.parse(value);
    } catch {
      ctx.addIssue({ code: 'custom', message: `expected name=path or a JSON object {"name","path","base_model_name"?}, got ${JSON.stringify(value)}` });
      return z.NEVER;
    }
  }
  const parsed = loraModuleObject.safeParse(raw);
  if (!parsed.success) {
    ctx.addIssue({ code: 'custom', message: `invalid LoRA module: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'module'}: ${i.message}`).join('; ')}` });
    return z.NEVER;
  }
  return { name: parsed.data.name, path: parsed.data.path, baseModelName: parsed.data.base_model_name ?? null };
});

const positiveInt = z.coerce.number().int().positive();

export const SimConfigSchema = z
  .object({
    model: z.string().min(1).default('Qwen/Qwen3-0.6B'),
    servedModelName: z.array(z.string().min(1)).optional(),
    tokenizer: z.string().min(1).optional(),
    host: z.string().min(1).default('127.0.0.1'),
    advertiseHost: z.string().min(1).optional(),
    port: z.coerce.number().int().min(0).max(65535).default(8000),
    dataParallelSize: positiveInt.default(1),
    blockSize: positiveInt.default(16),
    numGpuBlocksOverride: positiveInt.default(4096),
    maxNumSeqs: positiveInt.default(256),
    maxNumBatchedTokens: positiveInt.default(8192),
    maxModelLen: positiveInt.optional(),
    prefixCachingHashAlgo: z.enum(ENGINE_HASH_ALGORITHMS as [EngineHashAlgorithm, ...EngineHashAlgorithm[]]).default('sha256'),
    pythonHashSeed: z.string().nullable().default(null),
    kvEventsConfig: z.union([z.string(), z.record(z.string(), z.unknown())]).optional(),
    /** The vLLM release whose wire formats and hashing are reproduced: 0.34 (default) down to 0.9. */
    vllmVersion: z
      .string()
      .regex(/^0\.\d+(\.\d+)?$/, 'expected a vLLM version such as 0.34, 0.32 or 0.23')
      .default('0.34'),
    /** Which engine the pod is: vllm, or sglang (its events, hashing namespace and metric names). */
    engine: z.enum(['vllm', 'sglang']).default('vllm'),
    /** Overrides the version's event layout (map from vLLM 0.26, array before). */
    kvEventsLayout: z.enum(['array', 'map']).optional(),
    /** vLLM's kv_cache_report_mode: full re-announces prefix-cache hits as BlockStored. */
    kvCacheReportMode: z.enum(['default', 'full']).default('default'),
    kvEventsIntHashes: z.coerce.boolean().default(true),
    kvOffload: z.enum(['none', 'offloading-connector', 'lmcache']).default('none'),
    numCpuBlocks: z.coerce.number().int().min(0).default(0),
    lmcacheChunkSize: positiveInt.default(256),
    /** LMCache in-process engine (through vLLM's connector: no removals, parent 0) or multiprocess server (real parents, removals). */
    lmcacheMode: z.enum(['inproc', 'mp']).default('inproc'),
    loraModules: z.array(loraModule).default([]),
    maxLoras: positiveInt.default(4),
    timeScale: z.coerce.number().positive().max(10_000).default(1),
    defaultMaxTokens: positiveInt.default(64),
    // vLLM's default is off; on here because kvix's benchmarks read cached_tokens (see README).
    enablePromptTokensDetails: z.boolean().default(true),
    /** vLLM's --otlp-traces-endpoint: export a span per generation request (OTLP over HTTP/protobuf). */
    otlpTracesEndpoint: z.string().url().optional(),
    // vLLM refuses a request's own chat template unless started with this.
    trustRequestChatTemplate: z.boolean().default(false),
    // Not vLLM's (its publisher has no CURVE settings): publish to a CURVE collector (kvix centralized mode with --curve-*).
    kvEventsCurveServerKey: z.string().regex(/^.{40}$/, 'a Z85 CURVE public key (40 characters)').optional(),
    kvEventsCurveKeyFile: z.string().min(1).optional(),
    stepOverheadMs: z.coerce.number().min(0).default(DEFAULT_LATENCY.stepOverheadMs),
    prefillTokensPerSec: z.coerce.number().positive().default(DEFAULT_LATENCY.prefillTokensPerSec),
    cpuLoadTokensPerSec: z.coerce.number().positive().default(DEFAULT_LATENCY.cpuLoadTokensPerSec),
    decodeBaseMs: z.coerce.number().min(0).default(DEFAULT_LATENCY.decodeBaseMs),
    decodePerSeqMs: z.coerce.number().min(0).default(DEFAULT_LATENCY.decodePerSeqMs),
    faultDropEvents: z.coerce.number().min(0).max(1).default(0),
    faultSlowdown: z.coerce.number().min(1).max(1000).default(1),
    faultRefuse: z.coerce.number().min(0).max(1).default(0),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .strict();

export type SimConfigInput = z.input<typeof SimConfigSchema>;

export interface SimConfig extends Omit<z.output<typeof SimConfigSchema>, 'kvEventsConfig' | 'servedModelName' | 'tokenizer' | 'kvEventsLayout'> {
  kvEventsLayout: 'array' | 'map';
  /** What the version (and engine) put on the wire and hash. */
  wire: WireProfile;
  servedModelName: string[];
  tokenizer: string;
  kvEvents: KvEventsConfig;
  /** Whether --kv-events-config set a topic (otherwise the llm-d convention kv@host:port@model is used). */
  topicGiven: boolean;
}

/** What a vLLM version (or SGLang) publishes and how it hashes, as the simulator reproduces it. */
export interface WireProfile {
  engine: 'vllm' | 'sglang';
  /** vLLM >= 0.33: tagged extra keys, unset PYTHONHASHSEED seeded "vllm-none-hash" for sha256*. */
  taggedHashes: boolean;
  /** vLLM >= 0.34: 16-field BlockStored (map16 head), locality/session fields, self-describing offload events. */
  v034: boolean;
}

function versionAtLeast(version: string, minor: number): boolean {
  return Number(version.split('.')[1]) >= minor;
}

/** Events on by default (the simulator exists to feed kvix), replay on the next port. */
const DEFAULT_KV_EVENTS = { enable_kv_cache_events: true, publisher: 'zmq', endpoint: 'tcp://*:5557', replay_endpoint: 'tcp://*:5558' };

export class SimConfigError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }

  override readonly name = 'SimConfigError';
}

/**
 * Builds the one validated configuration: defaults < config file < vLLM's environment variables
 * (PYTHONHASHSEED, VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES) < flags.
 */
export function resolveSimConfig(flags: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): SimConfig {
  // Only flags the user typed reach here (see explicitFlags), so a flag's help-text default never
  // overrides the config file or the environment.
  let fromFile: Record<string, unknown> = {};
  const file = flags['config'];
  if (typeof file === 'string') {
    try {
      fromFile = (parseYaml(readFileSync(file, 'utf8')) ?? {}) as Record<string, unknown>;
    } catch (err) {
      throw new SimConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
    }
  }
  const fromEnv: Record<string, unknown> = {};
  if (env['PYTHONHASHSEED'] !== undefined) fromEnv['pythonHashSeed'] = env['PYTHONHASHSEED'];
  if (env['VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES'] !== undefined) fromEnv['kvEventsIntHashes'] = env['VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES'] !== '0';
  const fromFlags = Object.fromEntries(Object.entries(flags).filter(([k, v]) => v !== undefined && k !== 'config' && !FLEET_KEYS.has(k)));
  const merged = { ...fromFile, ...fromEnv, ...fromFlags };
  const parsed = SimConfigSchema.safeParse(merged);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || 'config'}: ${i.message}`).join('; ');
    throw new SimConfigError(`invalid simulator configuration: ${issues}`);
  }
  const c = parsed.data;
  let kvEvents: KvEventsConfig;
  let rawEvents: Record<string, unknown> | undefined;
  try {
    rawEvents = typeof c.kvEventsConfig === 'string' ? (JSON.parse(c.kvEventsConfig) as Record<string, unknown>) : c.kvEventsConfig;
  } catch (err) {
    throw new SimConfigError(`--kv-events-config is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  try {
    kvEvents = parseKvEventsConfig(rawEvents === undefined ? DEFAULT_KV_EVENTS : rawEvents);
  } catch (err) {
    throw new SimConfigError((err as Error).message);
  }
  if (c.kvOffload !== 'none' && c.numCpuBlocks === 0) c.numCpuBlocks = 2 * c.numGpuBlocksOverride;
  if (c.engine === 'sglang') {
    if (c.kvOffload !== 'none') throw new SimConfigError('invalid simulator configuration: --engine sglang simulates no CPU tier (use --kv-offload none)');
    if (c.prefixCachingHashAlgo === 'sha256_cbor_64bit') throw new SimConfigError('invalid simulator configuration: sha256_cbor_64bit is a vLLM 0.10 algorithm');
  }
  const tagged = c.engine === 'sglang' || versionAtLeast(c.vllmVersion, 33);
  if (tagged && c.prefixCachingHashAlgo === 'sha256_cbor_64bit') {
    throw new SimConfigError(`invalid simulator configuration: sha256_cbor_64bit existed only in vLLM 0.10.0-0.10.1 (give --vllm-version 0.10)`);
  }
  const wire: WireProfile = { engine: c.engine, taggedHashes: tagged, v034: c.engine === 'vllm' && versionAtLeast(c.vllmVersion, 34) };
  const kvEventsLayout = c.kvEventsLayout ?? (c.engine === 'sglang' || versionAtLeast(c.vllmVersion, 26) ? 'map' : 'array');
  const { kvEventsConfig: _raw, kvEventsLayout: _layout, ...rest } = c;
  return {
    ...rest,
    kvEventsLayout,
    wire,
    servedModelName: c.servedModelName ?? [c.model],
    tokenizer: c.tokenizer ?? c.model,
    kvEvents,
    topicGiven: rawEvents !== undefined && Object.hasOwn(rawEvents, 'topic'),
  };
}

const FLEET_KEYS = new Set(['pods', 'basePort', 'baseEventPort', 'baseReplayPort', 'writeEndpoints']);

/** Registers every simulator flag (vLLM's names where vLLM has one) on a command. */
export function addSimOptions(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'YAML file with any of the keys below (camelCase); flags override it')
    .option('--model <name>', 'model served (also the tokenizer, unless --tokenizer)', 'Qwen/Qwen3-0.6B')
    .option('--served-model-name <names...>', 'names the API accepts for the model (default: --model)')
    .option('--tokenizer <name-or-dir>', 'a bundled tokenizer name or a directory with tokenizer.json')
    .option('--host <host>', 'listen address of HTTP and of the KV-event sockets bound on tcp://* (0.0.0.0: every interface)', '127.0.0.1')
    .option('--advertise-host <host>', 'address other components reach this pod at (default: --host, or 127.0.0.1 for 0.0.0.0)')
    .option('--port <port>', 'HTTP port of rank 0 (rank r listens on port + r)', '8000')
    .option('--data-parallel-size <n>', 'engines (ranks) in this pod, each its own endpoint and event port', '1')
    .option('--block-size <n>', 'tokens per KV block', '16')
    .addOption(new Option('--num-gpu-blocks-override <n>', 'GPU KV blocks per engine').default('4096'))
    .option('--max-num-seqs <n>', 'most sequences batched at once', '256')
    .option('--max-num-batched-tokens <n>', 'prefill tokens per step (longer prompts prefill in chunks)', '8192')
    .option('--max-model-len <n>', 'longest prompt + completion (default: the tokenizer\'s, at most 32768)')
    .option('--prefix-caching-hash-algo <algo>', `${ENGINE_HASH_ALGORITHMS.join(' | ')}`, 'sha256')
    .option('--python-hash-seed <seed>', 'PYTHONHASHSEED (also read from the environment); unset: vLLM 0.33 rules')
    .option('--kv-events-config <json>', 'vLLM\'s KV events config (default: enabled, tcp://*:5557, replay tcp://*:5558; * binds the --host interface)')
    .option('--vllm-version <x.y>', 'vLLM release whose events and hashes are reproduced (0.34: tagged hashes, 16-field events, self-describing offload; 0.33: tagged; <= 0.32 untagged; < 0.26 array events)', '0.34')
    .addOption(new Option('--engine <engine>', 'vllm, or sglang (SGLang events, signed hashes, cache_salt on the wire, sglang:* metrics)').choices(['vllm', 'sglang']).default('vllm'))
    .addOption(new Option('--kv-events-layout <layout>', 'event layout (default: the version\'s): map (vLLM >= 0.26) or array (<= 0.23)').choices(['map', 'array']))
    .addOption(new Option('--kv-cache-report-mode <mode>', 'full: prefix-cache hits are re-announced as BlockStored (vLLM >= 0.34)').choices(['default', 'full']).default('default'))
    .option('--no-kv-events-int-hashes', 'send raw digests instead of 64-bit ints (VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=0)')
    .addOption(new Option('--kv-offload <mode>', 'CPU tier: none, offloading-connector ("CPU"; vLLM 0.34 self-describing chunks with tokens, older placeholders without) or lmcache (see --lmcache-mode)').choices(['none', 'offloading-connector', 'lmcache']).default('none'))
    .option('--num-cpu-blocks <n>', 'CPU tier size in blocks (default: 2 x GPU blocks when offloading)')
    .option('--lmcache-chunk-size <tokens>', 'LMCache chunk size', '256')
    .addOption(new Option('--lmcache-mode <mode>', 'LMCache in-process engine (inproc: one event per chunk with the next chunk\'s token, parent 0 past skipped chunks, no removals) or multiprocess server (mp: real parents, "CPU" removals, resync)').choices(['inproc', 'mp']).default('inproc'))
    .option('--lora-modules <modules...>', 'LoRA adapters as name=path or JSON {"name","path","base_model_name"}')
    .option('--max-loras <n>', 'LoRA adapters active at once (reported in vllm:lora_requests_info)', '4')
    .option('--time-scale <x>', 'simulated time runs x times faster than real time', '1')
    .option('--default-max-tokens <n>', 'completion length of chat requests without max_tokens', '64')
    .option('--enable-prompt-tokens-details', 'usage carries prompt_tokens_details.cached_tokens (the default here; vLLM\'s flag)')
    .option('--otlp-traces-endpoint <url>', 'export a span (llm_request) per generation request, child of its traceparent, to this OTLP/HTTP collector (vLLM\'s flag)')
    .option('--no-enable-prompt-tokens-details', 'usage.prompt_tokens_details is null, as vLLM answers without the flag')
    .option('--kv-events-curve-server-key <z85>', 'publish with CURVE to a collector with this public key (not a vLLM flag: kvix centralized mode with --curve-*)')
    .option('--kv-events-curve-key-file <file>', 'this publisher\'s CURVE keypair (a zcert file: public-key = "…", secret-key = "…")')
    .option('--trust-request-chat-template', 'render a request\'s own chat_template (refused with 400 otherwise, as vLLM does)')
    .option('--step-overhead-ms <ms>', 'latency model: fixed cost per engine step', String(DEFAULT_LATENCY.stepOverheadMs))
    .option('--prefill-tokens-per-sec <n>', 'latency model: prefill throughput for uncached tokens', String(DEFAULT_LATENCY.prefillTokensPerSec))
    .option('--cpu-load-tokens-per-sec <n>', 'latency model: loading offloaded blocks back', String(DEFAULT_LATENCY.cpuLoadTokensPerSec))
    .option('--decode-base-ms <ms>', 'latency model: a decode step with one sequence', String(DEFAULT_LATENCY.decodeBaseMs))
    .option('--decode-per-seq-ms <ms>', 'latency model: added per sequence in the batch', String(DEFAULT_LATENCY.decodePerSeqMs))
    .option('--fault-drop-events <fraction>', 'keep this fraction of event batches off the wire (replayable)', '0')
    .option('--fault-slowdown <x>', 'multiply every step duration', '1')
    .option('--fault-refuse <fraction>', 'answer this fraction of generation requests with 503', '0')
    .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'));
}
