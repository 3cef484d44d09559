import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Epp, EppConfigSchema } from '@kvix/epp';
import { BuiltinModelConfigSchema, BuiltinPredictor, LatencyPredictorConfigSchema, RemotePredictor, type LatencyPredictor, type PredictionRow, type TrainingEntry } from '@kvix/latency-predictor';
import { DEFAULT_PICKER_CONFIG, type EndpointPickerConfigInput } from '@kvix/scheduler';
import { freePort } from '@kvix/test-support';
import { LocalTokenizer } from '@kvix/tokenization';
import { pino } from 'pino';
import { printTable, rng, writeResult } from '../harness.js';
import { charsFor } from '../text.js';
import { SimFleetProcess } from '../routing/fleet.js';
import { LoadgenClient } from '../routing/routing-bench.js';
import { quantile } from '../routing/stats.js';
import type { WorkloadSpec } from '../routing/workload.js';

const SERVICE = fileURLToPath(new URL('../../../services/latency-predictor/bin/kvix-latency-predictor.js', import.meta.url));
const MODEL = 'Qwen/Qwen3-0.6B';
const silent = pino({ level: 'silent' });

/** 32 candidate pods of varied load: one routing decision's bulk prediction. */
function candidateRows(random: () => number, pods = 32): PredictionRow[] {
  const input = 200 + Math.floor(random() * 6000);
  return Array.from({ length: pods }, () => ({
    kv_cache_percentage: random(),
    input_token_length: input,
    num_request_waiting: random() < 0.2 ? Math.floor(random() * 8) : 0,
    num_request_running: Math.floor(random() * 64),
    num_tokens_generated: 1,
    prefix_cache_score: random() < 0.6 ? random() : 0,
    pod_type: '',
    prefill_tokens_in_flight: Math.floor(random() * 20_000),
    decode_tokens_in_flight: Math.floor(random() * 100_000),
    encoder_input_size: 0,
    encoder_matched_size: 0,
  }));
}

function trainingEntries(n: number): TrainingEntry[] {
  const random = rng(5);
  return Array.from({ length: n }, () => {
    const r = candidateRows(random, 1)[0]!;
    const tokens = r.input_token_length * (1 - r.prefix_cache_score) + r.prefill_tokens_in_flight;
    return { ...r, actual_ttft_ms: tokens / 16 + 13.5 * Math.max(1, Math.ceil(tokens / 8192)) + 400 * r.num_request_waiting, actual_tpot_ms: 13.5 + 0.08 * r.num_request_running };
  });
}

interface Overhead {
  predictor: string;
  decisions: number;
  failed: number;
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/**
 * Routing decisions arriving as a Poisson process at `rate`/s, each asking the predictor for 32
 * candidates; open loop, so a slow predictor shows as queueing rather than as fewer decisions.
 */
async function overhead(name: string, predictor: LatencyPredictor, rate: number, seconds: number): Promise<Overhead> {
  const random = rng(17);
  const gap = (): number => (-Math.log(1 - random()) / rate) * 1000;
  const run = async (ms: number, record: boolean): Promise<{ latencies: number[]; failed: number }> => {
    const latencies: number[] = [];
    let failed = 0;
    const pending: Promise<void>[] = [];
    const t0 = performance.now();
    let at = gap();
    while (at < ms) {
      const wait = t0 + at - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      const rows = candidateRows(random);
      const sent = performance.now();
      pending.push(
        predictor.predict(rows).then(
          () => void (record && latencies.push(performance.now() - sent)),
          () => void failed++,
        ),
      );
      at += gap();
    }
    await Promise.all(pending);
    return { latencies, failed };
  };
  await run(1000, false);
  const { latencies, failed } = await run(seconds * 1000, true);
  return {
    predictor: name,
    decisions: latencies.length,
    failed,
    meanMs: latencies.reduce((a, b) => a + b, 0) / Math.max(1, latencies.length),
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
    maxMs: Math.max(...latencies),
  };
}

async function startService(): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort();
  const child = spawn(process.execPath, [SERVICE, '--http-host', '127.0.0.1', '--http-port', String(port), '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`kvix-latency-predictor exited with code ${child.exitCode}`);
    if (await fetch(`${url}/healthz`).then((r) => r.ok, () => false)) break;
    if (Date.now() > deadline) throw new Error('kvix-latency-predictor did not start within 30 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, child };
}

async function train(url: string, entries: TrainingEntry[]): Promise<void> {
  const res = await fetch(`${url}/add_training_data_bulk`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ entries }) });
  if (res.status !== 202) throw new Error(`${url} refused training data: HTTP ${res.status}`);
}

interface MapeResult {
  rate: number;
  pods: number;
  warmupSeconds: number;
  measureSeconds: number;
  predictions: number;
  /** Mean |predicted − observed| / observed TTFT of routed requests after warm-up (built-in model, mean objective). */
  mape: number;
  /** The same for a constant predictor: the warm-up's mean TTFT (the baseline the model must beat). */
  constantMape: number;
  observedTtftP50Ms: number;
  observedTtftP90Ms: number;
  trainingSamples: { ttft: number; tpot: number } | null;
}

/** The EPP's live prediction error: |predicted − observed| / observed per routed request (sum and count of the histogram). */
async function errorRatio(epp: Epp): Promise<{ sum: number; count: number }> {
  const text = await (await fetch(`http://127.0.0.1:${epp.metricsPort}/metrics`)).text();
  const read = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
  return { sum: read('kvix_epp_latency_ttft_prediction_error_ratio_sum'), count: read('kvix_epp_latency_ttft_prediction_error_ratio_count') };
}

/**
 * Prediction error of the built-in model on the simulator's TTFT: simulated pods (vllm-sim's
 * latency model, time scale 1), the routing benchmark's shared-prefix chat workload through a
 * real EPP whose producer predicts every request without changing where it goes; after a warm-up
 * the EPP's own error histogram gives the MAPE.
 */
async function mape(quick: boolean): Promise<MapeResult> {
  const pods = 4;
  const rate = 12;
  const warmupSeconds = quick ? 15 : 30;
  const measureSeconds = quick ? 20 : 60;
  const tok = await LocalTokenizer.bundled(MODEL);
  const workload: WorkloadSpec = {
    seed: 11,
    model: MODEL,
    groups: 12,
    systemTokens: { min: 1000, max: 5000 },
    conversationsPerGroup: 6,
    turns: { min: 2, max: 6 },
    questionTokens: { min: 50, max: 600 },
    outputTokens: { min: 16, max: 120 },
    charsPerToken: charsFor(tok, 4000) / 4000,
  };
  const fleet = await SimFleetProcess.start({ pods, basePort: 19700, baseEventPort: 19800, timeScale: 1, numGpuBlocks: 2048, blockSize: 16, maxNumSeqs: 256, maxNumBatchedTokens: 8192, latency: {} });
  const base = DEFAULT_PICKER_CONFIG;
  const scheduler: EndpointPickerConfigInput = {
    ...base,
    plugins: [...base.plugins, { type: 'predicted-latency-producer', parameters: { predictWithoutSlo: true } }],
    schedulingProfiles: [{ name: 'default', plugins: [{ pluginRef: 'predicted-latency-producer' }, ...base.schedulingProfiles[0]!.plugins] }],
  };
  const epp = await Epp.start(
    EppConfigSchema.parse({
      logLevel: 'warn',
      gateway: { host: '127.0.0.1', port: 0 },
      extProc: { enabled: false },
      metrics: { host: '127.0.0.1', port: 0 },
      ingest: { endpointsFile: fleet.endpointsFile, endpointsPollIntervalMs: 500 },
      tokenization: { workers: 1 },
      scheduler,
      latencyPredictor: { enabled: true, builtin: { objective: 'mean' } },
    }),
    pino({ level: 'warn', base: { bench: 'latency-mape' } }, pino.destination(2)),
  );
  const loadgen = new LoadgenClient({ workload, requestTimeoutMs: 120_000 });
  try {
    const deadline = Date.now() + 30_000;
    while (!(epp.readiness().ready && epp.router.registry.status().every((s) => s.metrics !== null))) {
      if (Date.now() > deadline) throw new Error('the EPP was not ready within 30 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    const target = `http://127.0.0.1:${epp.gateway!.port}`;
    await loadgen.call({ type: 'reset' });
    const warm = await loadgen.call({ type: 'step', target, ratePerSec: rate, seconds: warmupSeconds, idPrefix: 'warm' });
    if (warm.type !== 'step-done') throw new Error('the load generator answered out of turn');
    const before = await errorRatio(epp);
    const measured = await loadgen.call({ type: 'step', target, ratePerSec: rate, seconds: measureSeconds, idPrefix: 'measure' });
    if (measured.type !== 'step-done') throw new Error('the load generator answered out of turn');
    const after = await errorRatio(epp);
    const warmTtfts = warm.records.filter((r) => r.ttftMs !== null).map((r) => r.ttftMs!);
    const constant = warmTtfts.reduce((a, b) => a + b, 0) / Math.max(1, warmTtfts.length);
    const ttfts = measured.records.filter((r) => r.ttftMs !== null).map((r) => r.ttftMs!);
    return {
      rate,
      pods,
      warmupSeconds,
      measureSeconds,
      predictions: after.count - before.count,
      mape: (after.sum - before.sum) / Math.max(1, after.count - before.count),
      constantMape: ttfts.reduce((a, t) => a + Math.abs(constant - t) / t, 0) / Math.max(1, ttfts.length),
      observedTtftP50Ms: quantile(ttfts, 0.5),
      observedTtftP90Ms: quantile(ttfts, 0.9),
      trainingSamples: epp.latencyPredictor?.describe().samples ?? null,
    };
  } finally {
    await loadgen.stop();
    await epp.stop();
    await fleet.stop();
  }
}

export async function runLatencyBenchmark({ quick }: { quick: boolean }): Promise<void> {
  const started = performance.now();
  const rate = 200;
  const seconds = quick ? 10 : 30;
  console.log(`latency-predictor: predictor overhead per routing decision, 32 candidate pods, ${rate} decisions/s (Poisson, open loop), ${seconds} s per predictor`);
  const entries = trainingEntries(2000);
  const builtin = new BuiltinPredictor(BuiltinModelConfigSchema.parse({}));
  builtin.train(entries);
  const service = await startService();
  const results: Overhead[] = [];
  try {
    await train(service.url, entries);
    results.push(await overhead('built-in model, in process', builtin, rate, seconds));
    for (const [name, window] of [['kvix-latency-predictor over HTTP, 1 ms coalescing', 1], ['kvix-latency-predictor over HTTP, no coalescing', 0]] as const) {
      const client = new RemotePredictor(LatencyPredictorConfigSchema.parse({ predictionUrls: [service.url], coalesceWindowMs: window, refreshIntervalMs: 600_000 }), { logger: silent });
      try {
        results.push(await overhead(name, client, rate, seconds));
      } finally {
        await client.close();
      }
    }
    // llm-d's own Python server, when one is running (see bench/README.md for how it was started).
    const llmd = process.env['KVIX_LLMD_PREDICTION_URL'];
    if (llmd) {
      const client = new RemotePredictor(LatencyPredictorConfigSchema.parse({ predictionUrls: llmd.split(','), ...(process.env['KVIX_LLMD_TRAINING_URL'] ? { trainingUrl: process.env['KVIX_LLMD_TRAINING_URL'] } : {}), timeoutMs: 2000, refreshIntervalMs: 600_000 }), { logger: silent });
      try {
        results.push(await overhead(`llm-d latency predictor (${llmd})`, client, rate, seconds));
      } finally {
        await client.close();
      }
    }
  } finally {
    service.child.kill('SIGTERM');
  }
  printTable(
    `predictor overhead per routing decision (32 candidates, ${rate}/s; llm-d publishes ~3.5 ms mean, 46 ms p99 at 100 QPS)`,
    ['predictor', 'decisions', 'failed', 'mean', 'p50', 'p99', 'max'],
    results.map((r) => [r.predictor, r.decisions, r.failed, `${r.meanMs.toFixed(3)} ms`, `${r.p50Ms.toFixed(3)} ms`, `${r.p99Ms.toFixed(3)} ms`, `${r.maxMs.toFixed(1)} ms`]),
  );
  const coalesced = results.find((r) => r.predictor.includes('1 ms coalescing'));
  const single = results.find((r) => r.predictor.includes('no coalescing'));
  if (coalesced && single) console.log(`coalescing: p99 ${(single.p99Ms / coalesced.p99Ms).toFixed(2)}× of no coalescing's, mean ${(single.meanMs / coalesced.meanMs).toFixed(2)}×`);

  console.log('\nlatency-predictor: built-in model error on the simulator\'s TTFT (4 pods, shared-prefix chat, every request predicted, routing unchanged)');
  const m = await mape(quick);
  printTable(
    'TTFT prediction error after warm-up (mean objective; llm-d claims ~5 % MAPE for XGBoost)',
    ['rate/s', 'warm-up', 'measured', 'predictions', 'MAPE', 'constant-predictor MAPE', 'TTFT p50 / p90', 'samples (TTFT/TPOT)'],
    [[m.rate, `${m.warmupSeconds} s`, `${m.measureSeconds} s`, m.predictions, `${(m.mape * 100).toFixed(1)}%`, `${(m.constantMape * 100).toFixed(1)}%`, `${m.observedTtftP50Ms.toFixed(0)} / ${m.observedTtftP90Ms.toFixed(0)} ms`, m.trainingSamples ? `${m.trainingSamples.ttft}/${m.trainingSamples.tpot}` : '–']],
  );
  writeResult(quick ? 'latency-predictor-quick' : 'latency-predictor', { quick, runSeconds: (performance.now() - started) / 1000, overhead: results, mape: m });
}
