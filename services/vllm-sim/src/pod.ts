import { EngineHasher, VLLM_DEFAULT_NONE_HASH_SEED } from '@kvix/block-keys';
import { resolveTokenizer, type LocalTokenizer } from '@kvix/tokenization';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { readFileSync } from 'node:fs';
import { SimConfigError, type SimConfig } from './config.js';
import { CpuTier } from './engine/cpu-tier.js';
import { Engine } from './engine/engine.js';
import { EventPublisher } from './events/publisher.js';
import { buildServer, type Faults, type LoraModule } from './http/server.js';
import { SimMetrics } from './metrics.js';
import { SimTracer } from './tracing.js';

/** Where one rank of a pod can be reached (what an endpoints file lists). */
export interface RankEndpoint {
  rank: number;
  address: string;
  port: number;
  eventEndpoint: string | null;
  replayEndpoint: string | null;
  topic: string;
  model: string;
}

const tokenizers = new Map<string, Promise<LocalTokenizer>>();

/** Pods of one process share a tokenizer per name (it is read-only and large). */
function tokenizerFor(spec: string): Promise<LocalTokenizer> {
  let t = tokenizers.get(spec);
  if (t === undefined) tokenizers.set(spec, (t = resolveTokenizer(spec)));
  return t;
}

/** PYTHONHASHSEED wins; unset, vLLM >= 0.33 seeds sha256* with a fixed string and xxhash* randomly, older vLLM everything randomly. */
export function effectiveHashSeed(config: Pick<SimConfig, 'pythonHashSeed' | 'prefixCachingHashAlgo'> & { wire?: SimConfig['wire'] }): string | null {
  if (config.pythonHashSeed !== null) return config.pythonHashSeed;
  if (config.wire !== undefined && !config.wire.taggedHashes) return null;
  return config.prefixCachingHashAlgo.startsWith('sha256') ? VLLM_DEFAULT_NONE_HASH_SEED : null;
}

class SimRank {
  engine!: Engine;
  publisher!: EventPublisher;
  metrics!: SimMetrics;
  app!: FastifyInstance;
  readonly faults: Faults;
  private tracer: SimTracer | null = null;

  constructor(
    readonly rank: number,
    private readonly config: SimConfig,
    private readonly tokenizer: LocalTokenizer,
    private readonly logger: Logger,
  ) {
    this.faults = { dropEventsFraction: config.faultDropEvents, slowdown: config.faultSlowdown, refuseFraction: config.faultRefuse };
  }

  get port(): number {
    return this.config.port === 0 ? 0 : this.config.port + this.rank;
  }

  get advertisedHost(): string {
    return this.config.advertiseHost ?? (this.config.host === '0.0.0.0' || this.config.host === '::' ? '127.0.0.1' : this.config.host);
  }

  topic(port: number): string {
    return this.config.topicGiven ? this.config.kvEvents.topic : `kv@${this.advertisedHost}:${port}@${this.config.servedModelName[0]!}`;
  }

  private newEngine(): Engine {
    const c = this.config;
    const hasher = new EngineHasher({ algorithm: c.prefixCachingHashAlgo, pythonHashSeed: effectiveHashSeed(c), blockSize: c.blockSize, hashFormat: c.wire.taggedHashes ? 'tagged' : 'untagged' });
    const cpu = new CpuTier(c.kvOffload, c.numCpuBlocks, c.blockSize, c.lmcacheChunkSize, c.lmcacheMode, c.wire.v034);
    const engine = new Engine(
      {
        blockSize: c.blockSize,
        numGpuBlocks: c.numGpuBlocksOverride,
        maxNumSeqs: c.maxNumSeqs,
        maxNumBatchedTokens: c.maxNumBatchedTokens,
        hasher,
        cpu,
        latency: { stepOverheadMs: c.stepOverheadMs, prefillTokensPerSec: c.prefillTokensPerSec, cpuLoadTokensPerSec: c.cpuLoadTokensPerSec, decodeBaseMs: c.decodeBaseMs, decodePerSeqMs: c.decodePerSeqMs },
        timeScale: c.timeScale,
        outputVocab: { from: 1000, to: Math.min(60_000, Math.max(1001, this.tokenizer.vocabSize)) },
        loraPaths: new Map(c.loraModules.map((l) => [l.name, l.path])),
        reportMode: c.kvCacheReportMode,
      },
      (events) => this.publisher.publish(events),
      (seconds) => this.metrics.observeTtft(seconds),
    );
    engine.slowdown = this.faults.slowdown;
    return engine;
  }

  async start(): Promise<void> {
    const c = this.config;
    const loras: LoraModule[] = c.loraModules.map((l, i) => ({ ...l, id: i + 1 }));
    const kvTokens = c.numGpuBlocksOverride * c.blockSize;
    if (c.maxModelLen !== undefined && c.maxModelLen > kvTokens) {
      throw new Error(`--max-model-len ${c.maxModelLen} is larger than the KV cache can hold (${kvTokens} tokens = ${c.numGpuBlocksOverride} blocks of ${c.blockSize}); raise --num-gpu-blocks-override or lower --max-model-len`);
    }
    const maxModelLen = c.maxModelLen ?? Math.min(this.tokenizer.maxModelLen, 32768, kvTokens);
    this.metrics = new SimMetrics(() => this.engine, {
      model: c.servedModelName[0]!,
      rank: this.rank,
      blockSize: c.blockSize,
      numGpuBlocks: c.numGpuBlocksOverride,
      numCpuBlocks: c.kvOffload === 'none' ? 0 : c.numCpuBlocks,
      hashAlgo: c.prefixCachingHashAlgo,
      maxLoras: c.maxLoras,
      lora: loras.length > 0,
      engine: c.engine,
    });
    if (c.otlpTracesEndpoint !== undefined) this.tracer = new SimTracer(c.otlpTracesEndpoint, c.servedModelName[0]!);
    this.app = buildServer({
      tracer: this.tracer,
      rank: this.rank,
      servedModelNames: c.servedModelName,
      modelRoot: c.model,
      maxModelLen,
      defaultMaxTokens: c.defaultMaxTokens,
      promptTokensDetails: c.enablePromptTokensDetails,
      trustRequestChatTemplate: c.trustRequestChatTemplate,
      tokenizer: this.tokenizer,
      loras,
      engine: () => this.engine,
      publisher: () => this.publisher,
      metrics: this.metrics,
      faults: this.faults,
      restartPublisher: () => this.publisher.restart(),
      // The cache goes when the new sequence starts, even behind another restart still under way.
      restartEngine: () => this.publisher.restart(() => this.engine.forgetEverything()),
      logger: this.logger,
    });
    const address = await this.app.listen({ host: c.host, port: this.port });
    const port = Number(new URL(address).port);
    this.publisher = new EventPublisher({
      config: c.kvEvents,
      rank: this.rank,
      topic: this.topic(port),
      layout: c.kvEventsLayout,
      intHashes: c.kvEventsIntHashes,
      wire: c.wire,
      logger: this.logger,
      bindHost: c.host,
      curve: curveClientOf(c),
    });
    this.publisher.dropFraction = this.faults.dropEventsFraction;
    this.engine = this.newEngine();
    await this.publisher.start();
    this.boundPort = port;
  }

  boundPort = 0;

  endpoint(): RankEndpoint {
    return {
      rank: this.rank,
      address: this.advertisedHost,
      port: this.boundPort,
      eventEndpoint: this.publisher.enabled ? this.publisher.endpoint : null,
      replayEndpoint: this.publisher.enabled ? this.publisher.replayEndpoint : null,
      topic: this.topic(this.boundPort),
      model: this.config.servedModelName[0]!,
    };
  }

  async stop(): Promise<void> {
    this.engine?.stop();
    if (this.app) {
      // Clients that poll (a router scraping /metrics) keep their connection busy, so close()
      // alone can wait forever: give answers in flight a moment, then cut what is left.
      const closing = this.app.close();
      await Promise.race([closing, new Promise((r) => setTimeout(r, 1000).unref())]);
      this.app.server.closeAllConnections();
      await closing;
    }
    await this.publisher?.close();
    await this.tracer?.shutdown().catch(() => undefined);
  }
}

/**
 * One simulated vLLM pod: `dataParallelSize` engines, each with its own HTTP port (port + rank),
 * KV-event port and replay port (vLLM's port + rank rule).
 */
export class SimPod {
  private constructor(
    readonly config: SimConfig,
    private readonly ranks: SimRank[],
    private readonly logger: Logger,
  ) {}

  static async start(config: SimConfig, logger: Logger): Promise<SimPod> {
    const tokenizer = await tokenizerFor(config.tokenizer);
    const ranks = Array.from({ length: config.dataParallelSize }, (_, r) => new SimRank(r, config, tokenizer, logger.child({ rank: r })));
    const pod = new SimPod(config, ranks, logger);
    try {
      for (const rank of ranks) await rank.start();
    } catch (err) {
      await pod.stop();
      throw err;
    }
    for (const e of pod.endpoints()) logger.info(e, 'simulated vLLM engine ready');
    return pod;
  }

  endpoints(): RankEndpoint[] {
    return this.ranks.map((r) => r.endpoint());
  }

  async stop(): Promise<void> {
    await Promise.allSettled(this.ranks.map((r) => r.stop()));
    this.logger.info({ ports: this.ranks.map((r) => r.boundPort) }, 'simulated vLLM pod stopped');
  }
}

/** The publisher's CURVE client settings, when both the collector's key and this pod's keypair are given. */
function curveClientOf(c: SimConfig): { publicKey: string; secretKey: string; serverKey: string } | undefined {
  if (c.kvEventsCurveServerKey === undefined && c.kvEventsCurveKeyFile === undefined) return undefined;
  if (c.kvEventsCurveServerKey === undefined || c.kvEventsCurveKeyFile === undefined) throw new SimConfigError('--kv-events-curve-server-key and --kv-events-curve-key-file go together');
  let text: string;
  try {
    text = readFileSync(c.kvEventsCurveKeyFile, 'utf8');
  } catch (err) {
    throw new SimConfigError(`cannot read ${c.kvEventsCurveKeyFile}: ${(err as Error).message}`);
  }
  const publicKey = /public-key\s*=\s*"?([^"\s]{40})"?/.exec(text)?.[1];
  const secretKey = /secret-key\s*=\s*"?([^"\s]{40})"?/.exec(text)?.[1];
  if (publicKey === undefined || secretKey === undefined) throw new SimConfigError(`${c.kvEventsCurveKeyFile} must hold public-key = "…" and secret-key = "…" (Z85)`);
  return { publicKey, secretKey, serverKey: c.kvEventsCurveServerKey };
}
