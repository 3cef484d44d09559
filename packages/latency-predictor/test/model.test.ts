import { describe, expect, it } from 'vitest';
import { BuiltinModelConfigSchema, BuiltinPredictor, PredictorError, type PredictionRow } from '../src/index.js';

/** A deterministic generator so every run sees the same observations. */
function lcg(seed: number): () => number {
  let s = seed;
  return () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
}

function row(r: () => number): PredictionRow {
  return {
    kv_cache_percentage: r(),
    input_token_length: Math.floor(100 + r() * 6000),
    num_request_waiting: 0,
    num_request_running: Math.floor(r() * 50),
    num_tokens_generated: 1,
    prefix_cache_score: r() < 0.7 ? r() : 0,
    pod_type: '',
    prefill_tokens_in_flight: r() < 0.5 ? Math.floor(r() * 20_000) : 0,
    decode_tokens_in_flight: 0,
    encoder_input_size: 0,
    encoder_matched_size: 0,
  };
}

/** The simulator's law (vllm-sim's default latency model): prefill at 16 k tokens/s plus a step cost per 8 k-token chunk. */
function simTtft(x: PredictionRow): number {
  const tokens = x.input_token_length * (1 - x.prefix_cache_score) + x.prefill_tokens_in_flight;
  return tokens / 16 + Math.max(1, Math.ceil(tokens / 8192)) * (13.5 + 0.08 * x.num_request_running);
}

const config = (over: Record<string, unknown> = {}) => BuiltinModelConfigSchema.parse({ minSamples: 20, ...over });

describe('built-in latency model', () => {
  it('refuses to predict until it has learned from minSamples TTFT observations', () => {
    const m = new BuiltinPredictor(config());
    const r = lcg(1);
    expect(() => m.predictNow([row(r)])).toThrow(PredictorError);
    for (let i = 0; i < 19; i++) m.train([{ ...row(r), actual_ttft_ms: 50, actual_tpot_ms: 0 }]);
    try {
      m.predictNow([row(r)]);
      expect.unreachable();
    } catch (err) {
      expect((err as PredictorError).code).toBe('NOT_READY');
    }
    m.train([{ ...row(r), actual_ttft_ms: 50, actual_tpot_ms: 0 }]);
    expect(m.ready).toBe(true);
    expect(m.predictNow([row(r)])[0]!.ttftMs).toBeGreaterThan(0);
  });

  it('learns how cache hits and queued prefill shape TTFT, within a few percent', () => {
    const m = new BuiltinPredictor(config({ objective: 'mean' }));
    const r = lcg(7);
    for (let i = 0; i < 3000; i++) {
      const x = row(r);
      m.train([{ ...x, actual_ttft_ms: simTtft(x) * (0.95 + 0.1 * r()), actual_tpot_ms: 0 }]);
    }
    let ape = 0;
    for (let i = 0; i < 1000; i++) {
      const x = row(r);
      ape += Math.abs(m.predictNow([x])[0]!.ttftMs - simTtft(x)) / simTtft(x);
    }
    expect(ape / 1000).toBeLessThan(0.05);
    // A pod holding the prompt is predicted faster than one that must prefill it.
    const cold = { ...row(r), input_token_length: 4000, prefix_cache_score: 0, prefill_tokens_in_flight: 0 };
    const [coldP, warmP] = m.predictNow([cold, { ...cold, prefix_cache_score: 0.95 }]);
    expect(warmP!.ttftMs).toBeLessThan(coldP!.ttftMs / 3);
  });

  it('predicts the configured quantile: about 90 % of observations fall at or below a p90 prediction', () => {
    const m = new BuiltinPredictor(config({ objective: 'quantile', quantile: 0.9 }));
    const r = lcg(11);
    const noisy = (x: PredictionRow) => simTtft(x) * Math.exp(0.3 * (r() + r() + r() - 1.5));
    for (let i = 0; i < 4000; i++) {
      const x = row(r);
      m.train([{ ...x, actual_ttft_ms: noisy(x), actual_tpot_ms: 0 }]);
    }
    let below = 0;
    for (let i = 0; i < 2000; i++) {
      const x = row(r);
      if (noisy(x) <= m.predictNow([x])[0]!.ttftMs) below++;
    }
    expect(below / 2000).toBeGreaterThan(0.85);
    expect(below / 2000).toBeLessThan(0.95);
  });

  it('answers TPOT 0 until it has TPOT observations, then learns that bigger batches decode slower', () => {
    const m = new BuiltinPredictor(config());
    const r = lcg(3);
    for (let i = 0; i < 30; i++) m.train([{ ...row(r), actual_ttft_ms: 40, actual_tpot_ms: 0 }]);
    expect(m.predictNow([row(r)])[0]!.tpotMs).toBe(0);
    for (let i = 0; i < 500; i++) {
      const x = row(r);
      m.train([{ ...x, actual_ttft_ms: 0, actual_tpot_ms: 13.5 + 0.08 * x.num_request_running }]);
    }
    const base = row(r);
    const [small, big] = m.predictNow([{ ...base, num_request_running: 2 }, { ...base, num_request_running: 200 }]);
    expect(big!.tpotMs).toBeGreaterThan(small!.tpotMs + 10);
  });
});
