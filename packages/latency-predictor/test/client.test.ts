import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { ceiling, freePort, waitFor } from '@kvix/test-support';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import type {
  PredictorError} from '../src/index.js';
import {
  BuiltinModelConfigSchema,
  BuiltinPredictor,
  FallbackPredictor,
  LatencyPredictorConfigSchema,
  PredictorMetrics,
  RemotePredictor,
  startPredictorServer,
  type LatencyPredictorConfigInput,
  type PredictionRow,
  type RunningPredictorServer,
  type TrainingEntry,
} from '../src/index.js';

const silent = pino({ level: 'silent' });
const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const row = (over: Partial<PredictionRow> = {}): PredictionRow => ({
  kv_cache_percentage: 0.2,
  input_token_length: 1000,
  num_request_waiting: 0,
  num_request_running: 4,
  num_tokens_generated: 1,
  prefix_cache_score: 0,
  pod_type: '',
  prefill_tokens_in_flight: 0,
  decode_tokens_in_flight: 0,
  encoder_input_size: 0,
  encoder_matched_size: 0,
  ...over,
});

/** TTFT grows 0.05 ms per uncached token plus 10 ms; TPOT 12 ms plus 0.1 ms per running request. */
const entry = (over: Partial<PredictionRow> = {}): TrainingEntry => {
  const r = row(over);
  return { ...r, actual_ttft_ms: 10 + 0.05 * r.input_token_length * (1 - r.prefix_cache_score) + 0.05 * r.prefill_tokens_in_flight, actual_tpot_ms: 12 + 0.1 * r.num_request_running };
};

function trainingSet(n: number): TrainingEntry[] {
  return Array.from({ length: n }, (_, i) => entry({ input_token_length: 200 + ((i * 379) % 5000), prefix_cache_score: (i % 5) / 5, prefill_tokens_in_flight: (i * 977) % 8000, num_request_running: i % 40 }));
}

async function server(port = 0, model = new BuiltinPredictor(BuiltinModelConfigSchema.parse({ minSamples: 20 }))): Promise<RunningPredictorServer & { model: BuiltinPredictor }> {
  const s = await startPredictorServer({ model, host: '127.0.0.1', port });
  cleanups.push(() => s.close());
  return { ...s, model };
}

function client(config: LatencyPredictorConfigInput, registry = new Registry()): { predictor: RemotePredictor; metrics: PredictorMetrics; registry: Registry } {
  const metrics = new PredictorMetrics(registry);
  // A call budget the servers here meet on a loaded machine too (the production default, 250 ms,
  // is for a router; tests that are about timeouts set their own).
  const predictor = new RemotePredictor(LatencyPredictorConfigSchema.parse({ flushIntervalMs: 60_000, refreshIntervalMs: 60_000, timeoutMs: ceiling(5_000), ...config }), { logger: silent, metrics });
  cleanups.push(() => predictor.close());
  return { predictor, metrics, registry };
}

async function metricValue(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  const v = (m?.values as { value: number; labels: Record<string, string | number>; metricName?: string }[] | undefined)?.filter((x) => Object.entries(labels).every(([k, val]) => String(x.labels[k]) === val) && (x.metricName === undefined || x.metricName === name || x.metricName === `${name}_count`));
  return (v ?? []).reduce((a, x) => a + x.value, 0);
}

/** A training server speaking the spec that records what it is sent. */
async function recordingTrainingServer(): Promise<{ url: string; bodies: { entries: TrainingEntry[] }[]; server: Server }> {
  const bodies: { entries: TrainingEntry[] }[] = [];
  const srv = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/add_training_data_bulk') {
        bodies.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as { entries: TrainingEntry[] });
        res.writeHead(202, { 'content-type': 'application/json' }).end('{"message":"ok"}');
      } else res.writeHead(404).end();
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => srv.close(() => r())));
  const addr = srv.address() as { port: number };
  return { url: `http://127.0.0.1:${addr.port}`, bodies, server: srv };
}

/** Accepts connections and never answers: a hung prediction server. */
async function blackHole(): Promise<string> {
  const sockets = new Set<Socket>();
  const srv: TcpServer = createTcpServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => srv.close(() => r()));
  });
  return `http://127.0.0.1:${(srv.address() as { port: number }).port}`;
}

describe('the HTTP API (llm-d-latency-predictor shape) backed by the built-in model', () => {
  it('answers 503 before the model is ready, 422 with FastAPI detail for a bad row, and 202 for training', async () => {
    const s = await server();
    const bulk = (body: unknown) => fetch(`${s.predictionUrl}/predict/bulk/strict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await bulk({ requests: [row()] })).status).toBe(503);
    const bad = await bulk({ requests: [row(), { ...row(), prefix_cache_score: 1.5 }] });
    expect(bad.status).toBe(422);
    expect(((await bad.json()) as { detail: { loc: unknown[] }[] }).detail[0]!.loc).toEqual(['body', 'requests', 1, 'prefix_cache_score']);
    const train = await fetch(`${s.trainingUrl}/add_training_data_bulk`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ entries: trainingSet(30) }) });
    expect(train.status).toBe(202);
    const ok = await bulk({ requests: [row(), row({ input_token_length: 4000 })] });
    expect(ok.status).toBe(200);
    const body = (await ok.json()) as { predictions: { ttft_ms: number; model_type: string; quantile: number }[]; total_requests: number; successful_predictions: number };
    expect(body.total_requests).toBe(2);
    expect(body.successful_predictions).toBe(2);
    expect(body.predictions[1]!.ttft_ms).toBeGreaterThan(body.predictions[0]!.ttft_ms);
    expect(body.predictions[0]!.quantile).toBe(0.9);
    const status = (await (await fetch(`${s.predictionUrl}/status`)).json()) as { is_ready: boolean; model_type: string };
    expect(status.is_ready).toBe(true);
  });

  it('reports a bad row of /predict/bulk in errors and still predicts the others', async () => {
    const s = await server();
    s.model.train(trainingSet(30));
    const res = await fetch(`${s.predictionUrl}/predict/bulk`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ requests: [row(), { ...row(), num_request_running: -1 }, row()] }) });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { predictions: (object | null)[]; errors: { index: number; error: string }[]; failed_predictions: number };
    expect(body.predictions.map((p) => p !== null)).toEqual([true, false, true]);
    expect(body.errors).toHaveLength(1);
    expect(body.errors[0]!.index).toBe(1);
    expect(body.errors[0]!.error).toContain('num_request_running');
    expect(body.failed_predictions).toBe(1);
  });

  it('publishes the model snapshot on the training server /metrics, which the client parses', async () => {
    const s = await server();
    s.model.train(trainingSet(50));
    const { predictor } = client({ predictionUrls: [s.predictionUrl] });
    await predictor.refresh();
    const snap = predictor.modelSnapshot!;
    expect(snap.modelType).toBe('kvix_online_bayesian_linear');
    expect(snap.ready).toBe(true);
    expect(snap.trainingSamples).toEqual({ ttft: 50, tpot: 50 });
    expect(snap.coefficients!.ttft['effective_input_tokens']).toBeCloseTo(0.05, 2);
  });
});

describe('remote predictor client', () => {
  it('predicts over HTTP exactly what the server model predicts', async () => {
    const s = await server();
    s.model.train(trainingSet(40));
    const { predictor } = client({ predictionUrls: [s.predictionUrl] });
    const rows = [row(), row({ input_token_length: 3000, prefix_cache_score: 0.5 }), row({ prefill_tokens_in_flight: 6000 })];
    const out = await predictor.predict(rows);
    expect(out.source).toBe('remote');
    expect(out.predictions).toEqual(s.model.predictNow(rows));
  });

  it('coalesces concurrent routing decisions into one bulk call and hands each its own rows back', async () => {
    const s = await server();
    s.model.train(trainingSet(40));
    const { predictor, registry } = client({ predictionUrls: [s.predictionUrl], coalesceWindowMs: 5 });
    const batches = Array.from({ length: 8 }, (_, i) => Array.from({ length: 32 }, (_, j) => row({ input_token_length: 100 + i * 1000 + j })));
    const answers = await Promise.all(batches.map((b) => predictor.predict(b)));
    answers.forEach((a, i) => expect(a.predictions).toEqual(s.model.predictNow(batches[i]!)));
    // The first decision finds the client idle and goes alone; the next 7 wait for company, and a
    // batch goes as soon as it holds maxBatchRows (100): 4 decisions, then 3. Three HTTP calls, not 8.
    expect(await metricValue(registry, 'kvix_latency_predictor_calls_total', { outcome: 'ok' })).toBe(3);
  });

  it('flushes training entries to the training server with the observed latencies', async () => {
    const rec = await recordingTrainingServer();
    const { predictor, registry } = client({ predictionUrls: [rec.url], trainingUrl: rec.url });
    const entries = trainingSet(3);
    predictor.train(entries);
    await predictor.flush();
    expect(rec.bodies).toHaveLength(1);
    expect(rec.bodies[0]!.entries.map((e) => [e.actual_ttft_ms, e.actual_tpot_ms, e.input_token_length, e.prefix_cache_score])).toEqual(entries.map((e) => [e.actual_ttft_ms, e.actual_tpot_ms, e.input_token_length, e.prefix_cache_score]));
    expect(Number.isNaN(Date.parse(rec.bodies[0]!.entries[0]!.timestamp!))).toBe(false);
    expect(await metricValue(registry, 'kvix_latency_predictor_training_entries_total', { outcome: 'sent' })).toBe(3);
  });

  it('keeps training entries through a training-server outage and delivers them once it is back', async () => {
    const port = await freePort();
    const { predictor } = client({ predictionUrls: [`http://127.0.0.1:${port}`] });
    predictor.train(trainingSet(25));
    await predictor.flush();
    const s = await server(port);
    await predictor.flush();
    expect(s.model.describe().samples!.ttft).toBe(25);
  });

  it('samples a flush above maxSampleSize, keeping the TTFT/TPOT mix', async () => {
    const rec = await recordingTrainingServer();
    const { predictor } = client({ trainingUrl: rec.url, maxSampleSize: 10 });
    const ttftOnly = trainingSet(30).map((e) => ({ ...e, actual_tpot_ms: 0 }));
    const tpotOnly = trainingSet(10).map((e) => ({ ...e, actual_ttft_ms: 0 }));
    predictor.train([...ttftOnly, ...tpotOnly]);
    await predictor.flush();
    const sent = rec.bodies[0]!.entries;
    expect(sent).toHaveLength(10);
    expect(sent.filter((e) => e.actual_ttft_ms > 0)).toHaveLength(8);
  });

  it('retries a hung prediction server on another one within the same decision', async () => {
    const s = await server();
    s.model.train(trainingSet(40));
    const hung = await blackHole();
    // Two servers, one hung: whichever is tried first, every decision gets an answer (the hung one
    // never answers; the budget only has to be one the live server meets on a loaded machine).
    const { predictor, registry } = client({ predictionUrls: [hung, s.predictionUrl], timeoutMs: ceiling(1_000), retries: 1 });
    for (let i = 0; i < 6; i++) expect((await predictor.predict([row()])).predictions).toHaveLength(1);
    expect(await metricValue(registry, 'kvix_latency_predictor_calls_total', { outcome: 'ok' })).toBe(6);
  });

  it('opens the circuit after repeated failures, refuses at once while open, and closes it when the server is back', async () => {
    const port = await freePort();
    const { predictor } = client({ predictionUrls: [`http://127.0.0.1:${port}`], retries: 0, circuitBreaker: { failureThreshold: 3, cooldownMs: 200 } });
    const codes: string[] = [];
    for (let i = 0; i < 5; i++) codes.push(await predictor.predict([row()]).then(() => 'ok', (e: PredictorError) => e.code));
    expect(codes).toEqual(['UNREACHABLE', 'UNREACHABLE', 'UNREACHABLE', 'CIRCUIT_OPEN', 'CIRCUIT_OPEN']);
    const s = await server(port);
    s.model.train(trainingSet(40));
    await waitFor(() => predictor.predict([row()]).then(() => true, () => false), 5000, 'the circuit to close again');
    expect(predictor.describe().remote!['predictionUrls']).toEqual([{ url: `http://127.0.0.1:${port}`, circuit: 'closed' }]);
  });
});

describe('remote predictor with the built-in fallback', () => {
  it("learns a peer process's observations in the built-in model only: the peer sent them to the training server itself", async () => {
    const training = await recordingTrainingServer();
    const { predictor: remote } = client({ trainingUrl: training.url, predictionUrls: [training.url], retries: 0 });
    const builtin = new BuiltinPredictor(BuiltinModelConfigSchema.parse({ minSamples: 20 }));
    const p = new FallbackPredictor(remote, builtin, { logger: silent });
    p.learnFromPeers(trainingSet(30));
    p.train(trainingSet(10));
    await remote.flush();
    expect(builtin.describe().samples).toEqual({ ttft: 40, tpot: 40 });
    // Only this process's own ten reached the server.
    expect(training.bodies.flatMap((b) => b.entries)).toHaveLength(10);
  });

  it('answers every decision through a prediction-server outage, from the built-in model trained on the same entries', async () => {
    const s = await server();
    const registry = new Registry();
    const { predictor: remote, metrics } = client({ predictionUrls: [s.predictionUrl], retries: 0, circuitBreaker: { failureThreshold: 2, cooldownMs: 60_000 } }, registry);
    const builtin = new BuiltinPredictor(BuiltinModelConfigSchema.parse({ minSamples: 20 }));
    const p = new FallbackPredictor(remote, builtin, { logger: silent, metrics });
    p.train(trainingSet(40));
    await remote.flush();
    expect((await p.predict([row()])).source).toBe('remote');
    await s.close();
    const sources: string[] = [];
    for (let i = 0; i < 4; i++) sources.push((await p.predict([row(), row({ input_token_length: 5000 })])).source);
    expect(sources).toEqual(['builtin', 'builtin', 'builtin', 'builtin']);
    expect(await metricValue(registry, 'kvix_latency_predictor_fallbacks_total', { reason: 'UNREACHABLE' })).toBe(2);
    expect(await metricValue(registry, 'kvix_latency_predictor_fallbacks_total', { reason: 'CIRCUIT_OPEN' })).toBe(2);
  });
});
