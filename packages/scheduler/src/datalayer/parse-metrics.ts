import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import type { EndpointMetrics } from '../types.js';

/** Metric names per model-server engine: vLLM (current and older names) and SGLang. */
const WAITING = ['vllm:num_requests_waiting', 'sglang:num_queue_reqs'];
const RUNNING = ['vllm:num_requests_running', 'sglang:num_running_reqs'];
const KV_USAGE = ['vllm:kv_cache_usage_perc', 'vllm:gpu_cache_usage_perc', 'sglang:token_usage'];

/**
 * The load figures scorers read, from a model server's Prometheus text. Values summed over the
 * label sets a server reports (vLLM reports one per engine); KV usage averaged. Returns null when
 * the text holds none of the load metrics (not a model server).
 */
export function parseEndpointMetrics(text: string, now: number): EndpointMetrics | null {
  // The parser drops a last sample that has no line end.
  const families = new Map(parsePrometheusTextFormat(text.endsWith('\n') ? text : `${text}\n`).map((f) => [f.name, f]));
  const values = (names: readonly string[]): number[] | null => {
    for (const name of names) {
      const f = families.get(name);
      if (f) return f.metrics.map((m) => Number(m.value)).filter((v) => Number.isFinite(v));
    }
    return null;
  };
  const waiting = values(WAITING);
  const running = values(RUNNING);
  const kv = values(KV_USAGE);
  if (waiting === null && running === null && kv === null) return null;
  const sum = (v: number[] | null): number => (v ?? []).reduce((a, b) => a + b, 0);
  const cacheInfo = families.get('vllm:cache_config_info')?.metrics[0]?.labels ?? {};
  const loras = new Set<string>();
  for (const m of families.get('vllm:lora_requests_info')?.metrics ?? []) {
    for (const key of ['running_lora_adapters', 'waiting_lora_adapters']) {
      for (const name of (m.labels?.[key] ?? '').split(',')) if (name.trim() !== '') loras.add(name.trim());
    }
  }
  const intOrNull = (s: string | undefined): number | null => (s !== undefined && /^\d+$/.test(s) ? Number(s) : null);
  return {
    waiting: sum(waiting),
    running: sum(running),
    kvUsage: kv && kv.length > 0 ? sum(kv) / kv.length : 0,
    blockSize: intOrNull(cacheInfo['block_size']),
    numGpuBlocks: intOrNull(cacheInfo['num_gpu_blocks']),
    loras: [...loras],
    scrapedAt: now,
  };
}
