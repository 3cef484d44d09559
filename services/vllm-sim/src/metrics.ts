import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Engine } from './engine/engine.js';

/** vLLM's histogram buckets for time to first token (seconds). */
const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0];
/** vLLM's buckets for whole-request latencies (e2e, queue, …), in seconds. */
const REQUEST_LATENCY_BUCKETS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0];
/** vLLM's finish reasons: every one has a vllm:request_success series from the start. */
const FINISH_REASONS = ['stop', 'length', 'abort'] as const;

export interface MetricsInfo {
  model: string;
  rank: number;
  blockSize: number;
  numGpuBlocks: number;
  numCpuBlocks: number;
  hashAlgo: string;
  maxLoras: number;
  /** LoRA serving is on (vLLM only registers vllm:lora_requests_info then). */
  lora: boolean;
  /** sglang: SGLang's metric names (sglang:num_queue_reqs, …) instead of vLLM's. */
  engine?: 'vllm' | 'sglang';
}

/**
 * The metrics a vLLM pod exposes at /metrics, under vLLM's names and labels (model_name, engine),
 * read from the engine at scrape time. Counters carry the `_total` suffix Python's client adds.
 */
export class SimMetrics {
  readonly registry = new Registry();
  private readonly ttft: Histogram;
  private readonly e2e: Histogram;
  private readonly success: Counter;
  private labels: { model_name: string; engine: string };

  constructor(
    private readonly engine: () => Engine,
    info: MetricsInfo,
  ) {
    const labels = { model_name: info.model, engine: String(info.rank) };
    const labelNames = ['model_name', 'engine'] as const;
    const r = this.registry;
    const current = this.engine;
    const gauge = (name: string, help: string, read: (e: Engine) => number): void => {
      new Gauge({
        name,
        help,
        labelNames,
        registers: [r],
        collect() {
          this.set(labels, read(current()));
        },
      });
    };
    this.labels = labels;
    if (info.engine === 'sglang') {
      // SGLang's scheduler metrics, under its names (what a router scraping SGLang reads).
      gauge('sglang:num_running_reqs', 'The number of running requests.', (e) => e.stats.running);
      gauge('sglang:num_queue_reqs', 'The number of requests in the waiting queue.', (e) => e.stats.waiting);
      gauge('sglang:token_usage', 'The token usage.', (e) => e.stats.kvUsage);
      gauge('sglang:cache_hit_rate', 'The prefix cache hit rate.', (e) => (e.stats.prefixQueries === 0 ? 0 : e.stats.prefixHits / e.stats.prefixQueries));
      this.success = new Counter({ name: 'sglang:num_requests_total', help: 'Number of requests processed.', labelNames: [...labelNames, 'finished_reason'], registers: [r] });
      this.ttft = new Histogram({ name: 'sglang:time_to_first_token_seconds', help: 'Histogram of time to first token in seconds.', labelNames, buckets: TTFT_BUCKETS, registers: [r] });
      this.e2e = new Histogram({ name: 'sglang:e2e_request_latency_seconds', help: 'Histogram of End-to-end request latency in seconds', labelNames, buckets: REQUEST_LATENCY_BUCKETS, registers: [r] });
      this.ttft.zero(labels);
      this.e2e.zero(labels);
      return;
    }
    gauge('vllm:num_requests_running', 'Number of requests in model execution batches.', (e) => e.stats.running);
    gauge('vllm:num_requests_waiting', 'Number of requests waiting to be processed.', (e) => e.stats.waiting);
    gauge('vllm:kv_cache_usage_perc', 'KV-cache usage. 1 means 100 percent usage.', (e) => e.stats.kvUsage);
    gauge('vllm:gpu_cache_usage_perc', 'GPU KV-cache usage (older name of vllm:kv_cache_usage_perc).', (e) => e.stats.kvUsage);
    gauge('vllm:cpu_blocks_used', 'Blocks held by the CPU offload tier (simulator).', (e) => e.stats.cpuBlocksUsed);
    // Engine totals only grow; each scrape adds what happened since the last one.
    const counter = (name: string, help: string, read: (e: Engine) => number): void => {
      let last = 0;
      new Counter({
        name,
        help,
        labelNames,
        registers: [r],
        collect() {
          // inc(0) on the first scrape makes the series appear at 0, as Python's client shows it.
          const now = read(current());
          this.inc(labels, Math.max(0, now - last));
          last = now;
        },
      });
    };
    counter('vllm:prefix_cache_queries_total', 'Prefix cache queries, in terms of number of queried tokens.', (e) => e.stats.prefixQueries);
    counter('vllm:prefix_cache_hits_total', 'Prefix cache hits, in terms of number of cached tokens.', (e) => e.stats.prefixHits);
    counter('vllm:external_prefix_cache_queries_total', 'External prefix cache queries (KV connector), in tokens.', (e) => e.stats.externalQueries);
    counter('vllm:external_prefix_cache_hits_total', 'External prefix cache hits (KV connector), in tokens.', (e) => e.stats.externalHits);
    counter('vllm:prompt_tokens_total', 'Number of prefill tokens processed.', (e) => e.stats.promptTokens);
    counter('vllm:generation_tokens_total', 'Number of generation tokens processed.', (e) => e.stats.generationTokens);
    counter('vllm:num_preemptions_total', 'Cumulative number of preemptions from the engine.', (e) => e.stats.preemptions);
    this.success = new Counter({ name: 'vllm:request_success_total', help: 'Count of successfully processed requests.', labelNames: [...labelNames, 'finished_reason'], registers: [r] });
    this.ttft = new Histogram({ name: 'vllm:time_to_first_token_seconds', help: 'Histogram of time to first token in seconds.', labelNames, buckets: TTFT_BUCKETS, registers: [r] });
    this.e2e = new Histogram({ name: 'vllm:e2e_request_latency_seconds', help: 'Histogram of e2e request latency in seconds.', labelNames, buckets: REQUEST_LATENCY_BUCKETS, registers: [r] });
    for (const reason of FINISH_REASONS) this.success.inc({ ...labels, finished_reason: reason }, 0);
    this.ttft.zero(labels);
    this.e2e.zero(labels);
    const cacheInfo = new Gauge({
      name: 'vllm:cache_config_info',
      help: 'Information of the LLMEngine CacheConfig',
      labelNames: ['block_size', 'num_gpu_blocks', 'num_cpu_blocks', 'enable_prefix_caching', 'prefix_caching_hash_algo', 'cache_dtype', 'engine'],
      registers: [r],
    });
    cacheInfo.set(
      {
        block_size: String(info.blockSize),
        num_gpu_blocks: String(info.numGpuBlocks),
        num_cpu_blocks: String(info.numCpuBlocks),
        enable_prefix_caching: 'True',
        prefix_caching_hash_algo: info.hashAlgo,
        cache_dtype: 'auto',
        engine: String(info.rank),
      },
      1,
    );
    if (info.lora) this.loraInfo(info.maxLoras);
    this.labels = labels;
  }

  private loraInfo(maxLoras: number): void {
    const current = this.engine;
    new Gauge({
      name: 'vllm:lora_requests_info',
      help: 'Running stats on lora requests.',
      labelNames: ['max_lora', 'waiting_lora_adapters', 'running_lora_adapters'],
      registers: [this.registry],
      collect() {
        const e = current();
        this.reset();
        this.set({ max_lora: String(maxLoras), waiting_lora_adapters: [...e.stats.waitingLoras].join(','), running_lora_adapters: [...e.stats.runningLoras].join(',') }, Date.now() / 1000);
      },
    });
  }

  observeTtft(seconds: number): void {
    this.ttft.observe(this.labels, seconds);
  }

  observeFinished(e2eSeconds: number, reason: string): void {
    this.e2e.observe(this.labels, e2eSeconds);
    this.success.inc({ ...this.labels, finished_reason: reason });
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }
}
