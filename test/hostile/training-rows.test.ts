/**
 * Issue 16: 50 training rows with actual_ttft_ms: 1e300 moved a predicted p90 TTFT from 78 to
 * 622 ms, from anyone who could reach the predictor. Rows beyond plausible ceilings are 422 now,
 * and the predictor can require a token.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PredictorService, PredictorServiceConfigSchema } from '@kvix/latency-predictor-service';
import { afterEach, describe, expect, it } from 'vitest';
import { silent } from '../support/stack.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function predictor(http: Record<string, unknown> = {}): Promise<PredictorService> {
  const service = await PredictorService.start(PredictorServiceConfigSchema.parse({ logLevel: 'silent', http: { host: '127.0.0.1', port: 0, ...http }, model: { minSamples: 20 } }), silent);
  cleanups.push(() => service.stop());
  return service;
}

const row = (i: number, ttft: number) => ({ kv_cache_percentage: 0.3, input_token_length: 200 + i, num_request_waiting: i % 3, num_request_running: 2, num_tokens_generated: 0, prefix_cache_score: 0.5, actual_ttft_ms: ttft, actual_tpot_ms: 0 });
const train = (url: string, entries: unknown[], headers: Record<string, string> = {}) => fetch(`${url}/add_training_data_bulk`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ entries }) });
const predict = async (url: string, headers: Record<string, string> = {}): Promise<number> =>
  ((await (await fetch(`${url}/predict`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(row(0, 0)) })).json()) as { ttft_ms: number }).ttft_ms;

describe('predictor training rows', () => {
  it('refuses absurd observations with 422 and learns nothing from them', async () => {
    const p = await predictor();
    expect((await train(p.trainingUrl, Array.from({ length: 40 }, (_, i) => row(i, 70 + (i % 10))))).status).toBe(202);
    const before = await predict(p.predictionUrl);
    for (const absurd of [1e300, 3_600_001]) {
      const res = await train(p.trainingUrl, Array.from({ length: 50 }, (_, i) => row(i, absurd)));
      expect(res.status).toBe(422);
      const body = (await res.json()) as { error: { code: string }; detail: { loc: unknown[] }[] };
      expect(body.error.code).toBe('INVALID_REQUEST');
      expect(body.detail[0]!.loc).toEqual(['body', 'entries', 0, 'actual_ttft_ms']);
    }
    for (const field of ['input_token_length', 'num_request_waiting']) {
      expect((await train(p.trainingUrl, [{ ...row(0, 80), [field]: 1e12 }])).status).toBe(422);
    }
    expect(await predict(p.predictionUrl)).toBe(before);
  });

  it('requires the bearer token on training and predictions when one is configured (probes excepted)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvix-predictor-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'token'), 'predictor-token\n');
    const p = await predictor({ authTokenFile: join(dir, 'token') });
    expect((await train(p.trainingUrl, [row(0, 80)])).status).toBe(401);
    expect((await train(p.trainingUrl, [row(0, 80)], { authorization: 'Bearer predictor-token' })).status).toBe(202);
    expect((await fetch(`${p.predictionUrl}/status`)).status).toBe(401);
    expect((await fetch(`${p.trainingUrl}/healthz`)).status).toBe(200);
  });
});
