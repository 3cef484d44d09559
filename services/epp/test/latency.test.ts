import { createServer, type Server } from 'node:http';
import { BuiltinModelConfigSchema, BuiltinPredictor, startPredictorServer, type RunningPredictorServer, type TrainingEntry } from '@kvix/latency-predictor';
import { PREDICTED_LATENCY_PICKER_CONFIG } from '@kvix/scheduler';
import { ceiling, waitFor } from '@kvix/test-support';
import { startLocalPod, writeLocalEndpointsFile, type LocalPod } from '@kvix/vllm-sim/testing';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Epp, EppConfigSchema } from '../src/index.js';

const MODEL = 'Qwen/Qwen3-0.6B';
const silent = pino({ level: 'silent' });
const SYSTEM = `You are the support assistant of a bicycle shop. ${'We repair, service and sell road, gravel and city bikes; opening hours are nine to six. '.repeat(60)}`;

let pods: LocalPod[] = [];
let predictorServer: RunningPredictorServer;
let recorder: Server;
const recorded: TrainingEntry[] = [];
let epp: Epp;
let gateway: string;

/** A training server that records every entry it is sent and hands them on to the kvix predictor server. */
async function recordingTrainingServer(forwardTo: string): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (req.method === 'POST' && req.url === '/add_training_data_bulk') recorded.push(...(JSON.parse(body.toString('utf8')) as { entries: TrainingEntry[] }).entries);
      void fetch(`${forwardTo}${req.url}`, { method: req.method, headers: { 'content-type': 'application/json' }, ...(req.method === 'POST' ? { body } : {}) }).then(
        async (r) => res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/json' }).end(Buffer.from(await r.arrayBuffer())),
        () => res.writeHead(502).end(),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}` };
}

/** What the predictor knows before any traffic: TTFT is 40 ms plus 2 s per request waiting in the pod's queue. */
function queueingLaw(): TrainingEntry[] {
  const out: TrainingEntry[] = [];
  for (let i = 0; i < 200; i++) {
    const waiting = i % 4;
    out.push({
      kv_cache_percentage: (i % 7) / 20,
      input_token_length: 200 + ((i * 131) % 2000),
      num_request_waiting: waiting,
      num_request_running: i % 2,
      num_tokens_generated: 0,
      prefix_cache_score: (i % 3) / 3,
      pod_type: '',
      prefill_tokens_in_flight: 0,
      decode_tokens_in_flight: 0,
      encoder_input_size: 0,
      encoder_matched_size: 0,
      actual_ttft_ms: 40 + 2000 * waiting,
      actual_tpot_ms: 12,
    });
  }
  return out;
}

beforeAll(async () => {
  // Real time (time scale 1) and one sequence at a time, so a pod given two long requests has a queue.
  pods = [await startLocalPod({ timeScale: 1, maxNumSeqs: 1, numGpuBlocksOverride: 1024 }), await startLocalPod({ timeScale: 1, maxNumSeqs: 1, numGpuBlocksOverride: 1024 })];
  predictorServer = await startPredictorServer({ model: new BuiltinPredictor(BuiltinModelConfigSchema.parse({ objective: 'mean', minSamples: 20 })), host: '127.0.0.1', port: 0 });
  const train = await fetch(`${predictorServer.trainingUrl}/add_training_data_bulk`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ entries: queueingLaw() }) });
  expect(train.status).toBe(202);
  const rec = await recordingTrainingServer(predictorServer.trainingUrl);
  recorder = rec.server;
  const config = EppConfigSchema.parse({
    logLevel: 'silent',
    gateway: { host: '127.0.0.1', port: 0 },
    extProc: { enabled: false },
    metrics: { host: '127.0.0.1', port: 0 },
    ingest: { endpointsFile: writeLocalEndpointsFile(pods, MODEL), readinessTimeoutMs: 5000 },
    tokenization: { workers: 0 },
    scheduler: { ...PREDICTED_LATENCY_PICKER_CONFIG, objectives: [{ name: 'batch', priority: -1 }] },
    latencyPredictor: { predictionUrls: [predictorServer.predictionUrl], trainingUrl: rec.url, flushIntervalMs: 100, timeoutMs: ceiling(1_000), circuitBreaker: { failureThreshold: 2, cooldownMs: 60_000 }, builtin: { minSamples: 3 } },
  });
  epp = await Epp.start(config, silent);
  gateway = `http://127.0.0.1:${epp.gateway!.port}`;
  await waitFor(() => epp.readiness().ready && epp.router.registry.status().every((s) => s.metrics !== null), 15_000, 'the EPP to be ready with every pod scraped');
});

afterAll(async () => {
  await epp?.stop();
  await predictorServer?.close();
  await new Promise<void>((r) => (recorder ? recorder.close(() => r()) : r()));
  for (const p of pods) await p.pod.stop();
});

interface Answer {
  status: number;
  endpoint: string | null;
  droppedReason: string | null;
  ttftMs: number | null;
  e2eMs: number;
  promptTokens: number;
  completionTokens: number;
}

/** A streamed chat request through the gateway, timed like a client would. */
async function chat(question: string, headers: Record<string, string> = {}, maxTokens = 8): Promise<Answer> {
  const sent = performance.now();
  const res = await fetch(`${gateway}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: MODEL, max_tokens: maxTokens, stream: true, stream_options: { include_usage: true }, messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: question }] }),
  });
  let ttftMs: number | null = null;
  let text = '';
  const decoder = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    text += decoder.decode(chunk, { stream: true });
    if (ttftMs === null && /"content":"[^"]/.test(text)) ttftMs = performance.now() - sent;
  }
  const usage = [...text.matchAll(/"usage":\{"prompt_tokens":(\d+),[^}]*"completion_tokens":(\d+)/g)].pop();
  return { status: res.status, endpoint: res.headers.get('x-kvix-endpoint'), droppedReason: res.headers.get('x-llm-d-request-dropped-reason'), ttftMs, e2eMs: performance.now() - sent, promptTokens: Number(usage?.[1] ?? 0), completionTokens: Number(usage?.[2] ?? 0) };
}

/** Keeps a pod busy without the router knowing: long generations straight to the pod. */
function occupy(pod: LocalPod, requests: number, promptWords = 10): Promise<unknown>[] {
  return Array.from({ length: requests }, (_, i) =>
    fetch(`${pod.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, prompt: `${i} busy ${'work '.repeat(promptWords)}`, max_tokens: 300 }) }).then((r) => r.text()),
  );
}

const waiting = (pod: LocalPod) => epp.router.registry.status().find((s) => s.id === pod.id)?.metrics?.waiting ?? 0;

describe('predicted-latency routing through the gateway', () => {
  it('trains the predictor with every completed streamed request: observed TTFT from the first text chunk, TPOT from the rest', async () => {
    const answer = await chat('Do you fix tubeless tyres?', {}, 12);
    expect(answer.status).toBe(200);
    const entries = await waitFor(() => {
      const mine = recorded.filter((e) => e.input_token_length === answer.promptTokens);
      return mine.length >= 2 ? mine : undefined;
    }, 10_000, 'the TTFT and TPOT entries of the request');
    const ttft = entries.find((e) => e.actual_ttft_ms > 0)!;
    const tpot = entries.find((e) => e.actual_tpot_ms > 0)!;
    // Dispatch → first text chunk, seen by the router before the client sees it.
    expect(ttft.actual_ttft_ms).toBeGreaterThan(0);
    expect(ttft.actual_ttft_ms).toBeLessThanOrEqual(answer.ttftMs!);
    expect(ttft.actual_tpot_ms).toBe(0);
    // The rest of the stream spread over the tokens after the first.
    expect(tpot.actual_tpot_ms).toBeGreaterThan(0);
    expect(tpot.actual_tpot_ms * (answer.completionTokens - 1)).toBeLessThanOrEqual(answer.e2eMs - ttft.actual_ttft_ms + 5);
    expect(Number.isNaN(Date.parse(ttft.timestamp!))).toBe(false);
    // The same system prompt again: the index says the pod that served it holds most of it.
    const again = await chat('And do you sell tyre sealant?');
    const second = await waitFor(() => recorded.find((e) => e.input_token_length === again.promptTokens && e.actual_ttft_ms > 0), 10_000, 'the second request\'s TTFT entry');
    expect(second.prefix_cache_score).toBeGreaterThan(0.8);
  });

  it('sends an SLO request away from the pod holding its prefix when that pod is predicted to miss the SLO', async () => {
    const [a, b] = pods as [LocalPod, LocalPod];
    // Pod b caches the system prompt, then gets a queue the router did not cause.
    expect((await fetch(`${b.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, max_tokens: 1, messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: 'warm up' }] }) })).status).toBe(200);
    await waitFor(async () => ((await epp.stack!.index.podCounts()).find((c) => c.pod === b.id)?.entries ?? 0) > 50, 10_000, 'pod b\'s blocks in the index');
    const busy = occupy(b, 2);
    await waitFor(() => waiting(b) >= 1, 10_000, 'pod b to report a queue');
    expect(waiting(a)).toBe(0);
    const withSlo = await chat('Is the shop open on Sunday?', { 'x-llm-d-slo-ttft-ms': '800' });
    expect(withSlo.status).toBe(200);
    expect(withSlo.endpoint).toBe(a.id);
    const described = (await (await fetch(`http://127.0.0.1:${epp.metricsPort}/debug/latency-predictor`)).json()) as { kind: string };
    expect(described.kind).toBe('remote+builtin');
    await Promise.all(busy);
  });

  it('answers 429 to a sheddable SLO request no pod can meet, and serves a non-sheddable one', async () => {
    const busy = [...occupy(pods[0]!, 2, 900), ...occupy(pods[1]!, 2, 900)];
    await waitFor(() => pods.every((p) => waiting(p) >= 1 && (epp.router.registry.status().find((s) => s.id === p.id)?.metrics?.kvUsage ?? 0) >= 0.02), 10_000, 'both pods queued and warm');
    const shed = await chat('Can I book a repair?', { 'x-llm-d-slo-ttft-ms': '300', 'x-llm-d-inference-objective': 'batch' });
    expect(shed.status).toBe(429);
    expect(shed.droppedReason).toBe('rejected-saturated');
    const kept = await chat('Can I book a repair?', { 'x-llm-d-slo-ttft-ms': '300' });
    expect(kept.status).toBe(200);
    await Promise.all(busy);
  });

  it('keeps routing SLO requests when the prediction server goes away, on the built-in model', async () => {
    await predictorServer.close();
    const answers = await Promise.all(['Where are you?', 'Do you rent bikes?', 'Do you sell helmets?', 'Any discounts?'].map((q) => chat(q, { 'x-llm-d-slo-ttft-ms': '2000' })));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200]);
    const metrics = await (await fetch(`http://127.0.0.1:${epp.metricsPort}/metrics`)).text();
    const fallbacks = [...metrics.matchAll(/^kvix_latency_predictor_fallbacks_total\{[^}]*\} (\d+)/gm)].reduce((s, m) => s + Number(m[1]), 0);
    expect(fallbacks).toBeGreaterThanOrEqual(4);
    expect(metrics).toMatch(/^kvix_epp_latency_predictions_total\{outcome="predicted",source="builtin"\} [1-9]/m);
  });
});
