import { LatencyPredictorConfigSchema, RemotePredictor, type PredictionRow, type TrainingEntry } from '@kvix/latency-predictor';
import { ceiling } from '@kvix/test-support';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { PredictorService, PredictorServiceConfigSchema, type PredictorServiceConfigInput } from '../src/index.js';

const silent = pino({ level: 'silent' });
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function service(over: PredictorServiceConfigInput = {}): Promise<PredictorService> {
  const s = await PredictorService.start(PredictorServiceConfigSchema.parse({ logLevel: 'silent', http: { host: '127.0.0.1', port: 0 }, model: { minSamples: 10 }, ...over }), silent);
  cleanups.push(() => s.stop());
  return s;
}

// The client's own 250 ms call budget is for a router in production; what these tests check is the
// API, and a cold server on a loaded machine can take seconds to answer its first call.
function client(predictionUrl: string, trainingUrl?: string): RemotePredictor {
  const c = new RemotePredictor(LatencyPredictorConfigSchema.parse({ predictionUrls: [predictionUrl], ...(trainingUrl ? { trainingUrl } : {}), flushIntervalMs: 60_000, refreshIntervalMs: 60_000, timeoutMs: ceiling(15_000) }), { logger: silent });
  cleanups.push(() => c.close());
  return c;
}

const row = (over: Partial<PredictionRow> = {}): PredictionRow => ({ kv_cache_percentage: 0.1, input_token_length: 800, num_request_waiting: 0, num_request_running: 2, num_tokens_generated: 1, prefix_cache_score: 0, pod_type: '', prefill_tokens_in_flight: 0, decode_tokens_in_flight: 0, encoder_input_size: 0, encoder_matched_size: 0, ...over });
const entries = (n: number): TrainingEntry[] =>
  Array.from({ length: n }, (_, i) => {
    const r = row({ input_token_length: 100 + i * 97, prefix_cache_score: (i % 4) / 4, prefill_tokens_in_flight: (i * 1013) % 6000 });
    return { ...r, actual_ttft_ms: 15 + (r.input_token_length * (1 - r.prefix_cache_score) + r.prefill_tokens_in_flight) / 16, actual_tpot_ms: 13 };
  });

describe('kvix-latency-predictor', () => {
  it('learns from a client\'s training entries and answers its bulk predictions over HTTP', async () => {
    const s = await service();
    const c = client(s.predictionUrl);
    await expect(c.predict([row()])).rejects.toMatchObject({ code: 'HTTP_STATUS' });
    c.train(entries(40));
    await c.flush();
    const { predictions, source } = await c.predict([row(), row({ prefix_cache_score: 0.9 }), row({ prefill_tokens_in_flight: 8000 })]);
    expect(source).toBe('remote');
    expect(predictions).toEqual(s.model.predictNow([row(), row({ prefix_cache_score: 0.9 }), row({ prefill_tokens_in_flight: 8000 })]));
    // A cache hit shortens the predicted TTFT; queued prefill ahead lengthens it.
    expect(predictions[1]!.ttftMs).toBeLessThan(predictions[0]!.ttftMs);
    expect(predictions[2]!.ttftMs).toBeGreaterThan(predictions[0]!.ttftMs * 3);
  });

  it('serves probes, its metrics and the model snapshot the way llm-d\'s training server publishes it', async () => {
    const s = await service();
    expect((await fetch(`${s.trainingUrl}/healthz`)).status).toBe(200);
    const ready = (await (await fetch(`${s.trainingUrl}/readyz`)).json()) as { status: string; model_ready: boolean };
    expect(ready).toMatchObject({ status: 'ready', model_ready: false });
    const c = client(s.predictionUrl);
    c.train(entries(12));
    await c.flush();
    const metrics = await (await fetch(`${s.trainingUrl}/metrics`)).text();
    expect(metrics).toContain('kvix_latency_predictor_model_samples{model="ttft"} 12');
    expect(metrics).toContain('model_type{type="kvix_online_bayesian_linear"} 1');
    expect(metrics).toMatch(/^ttft_coef\{feature="effective_input_tokens"\} [0-9.e-]+$/m);
    expect(metrics).toContain('training_samples_count{model="ttft"} 12');
    const info = (await (await fetch(`${s.trainingUrl}/model/download/info`)).json()) as { model_type: string; model_status: { ttft_model_ready: boolean } };
    expect(info).toMatchObject({ model_type: 'kvix_online_bayesian_linear', model_status: { ttft_model_ready: true } });
  });

  it('splits the prediction and training APIs across two ports like llm-d\'s sidecars', async () => {
    const s = await service({ predictionPort: 0 });
    expect(s.predictionUrl).not.toBe(s.trainingUrl);
    const c = client(s.predictionUrl, s.trainingUrl);
    c.train(entries(20));
    await c.flush();
    expect((await c.predict([row()])).predictions).toHaveLength(1);
    const wrongPort = await fetch(`${s.predictionUrl}/add_training_data_bulk`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ entries: [] }) });
    expect(wrongPort.status).toBe(404);
    expect((await fetch(`${s.trainingUrl}/status`)).status).toBe(404);
    const status = (await (await fetch(`${s.predictionUrl}/status`)).json()) as { training_server_url: string; is_ready: boolean };
    expect(status).toEqual(expect.objectContaining({ training_server_url: s.trainingUrl, is_ready: true }));
  });
});
