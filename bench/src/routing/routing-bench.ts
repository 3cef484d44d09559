import { writeFileSync, mkdirSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { Epp, EppConfigSchema } from '@kvix/epp';
import { KvEventsService, KvEventsServiceConfigSchema } from '@kvix/kv-events-service';
import type { ReplicationSettingsInput } from '@kvix/replication';
import { startNats } from '@kvix/test-support';
import type { DirectorObserver } from '@kvix/scheduler';
import { LocalTokenizer } from '@kvix/tokenization';
import { pino } from 'pino';
import { printTable, writeResult } from '../harness.js';
import { charsFor } from '../text.js';
import { ARMS, SLO_TTFT_MS, type Arm } from './arms.js';
import { ttftChart } from './chart.js';
import { SimFleetProcess, type FleetSpec, type PodCounters } from './fleet.js';
import type { FromLoadgen, LoadgenData, RequestRecord, ToLoadgen } from './loadgen-worker.js';
import { histogramDelta, histogramQuantile, histogramSum, quantile } from './stats.js';
import { Workload, type WorkloadSpec } from './workload.js';

const MODEL = 'Qwen/Qwen3-0.6B';

interface Plan {
  fleet: FleetSpec;
  workload: WorkloadSpec;
  /** Requests per (simulated) second, one step each, lowest first. */
  rates: number[];
  /** Simulated seconds of arrivals per step (the step then drains). */
  stepSeconds: number;
  arms: Arm[];
}

function planFor(quick: boolean): Plan {
  const fleet: FleetSpec = {
    pods: 8,
    basePort: 19200,
    baseEventPort: 19600,
    timeScale: 1,
    numGpuBlocks: 2048,
    blockSize: 16,
    maxNumSeqs: 256,
    maxNumBatchedTokens: 8192,
    latency: {},
  };
  const workload: WorkloadSpec = {
    seed: 7,
    model: MODEL,
    // 32 prompts of 2–6 k tokens (~128 k tokens) against 8 × 32 k tokens of KV cache: no pod holds
    // them all, and with the conversations' histories the fleet evicts constantly, which is where a
    // router's guess of who holds what drifts from the truth.
    groups: 32,
    systemTokens: { min: 2000, max: 6000 },
    conversationsPerGroup: 8,
    turns: { min: 3, max: 8 },
    questionTokens: { min: 100, max: 400 },
    outputTokens: { min: 32, max: 160 },
    charsPerToken: 0,
  };
  const plan = quick ? { fleet, workload, rates: [8, 24, 40], stepSeconds: 8, arms: ARMS } : { fleet, workload, rates: [8, 16, 24, 32, 40], stepSeconds: 20, arms: ARMS };
  // For exploring other regimes without editing the file; the README's figures use none of them.
  const env = process.env;
  if (env['KVIX_ROUTING_RATES']) plan.rates = env['KVIX_ROUTING_RATES'].split(',').map(Number);
  if (env['KVIX_ROUTING_STEP_SECONDS']) plan.stepSeconds = Number(env['KVIX_ROUTING_STEP_SECONDS']);
  if (env['KVIX_ROUTING_TIME_SCALE']) fleet.timeScale = Number(env['KVIX_ROUTING_TIME_SCALE']);
  if (env['KVIX_ROUTING_GPU_BLOCKS']) fleet.numGpuBlocks = Number(env['KVIX_ROUTING_GPU_BLOCKS']);
  if (env['KVIX_ROUTING_GROUPS']) workload.groups = Number(env['KVIX_ROUTING_GROUPS']);
  if (env['KVIX_ROUTING_ARMS']) {
    const names = env['KVIX_ROUTING_ARMS'].split(',');
    plan.arms = ARMS.filter((a) => names.includes(a.name));
  }
  return plan;
}

export interface StepResult {
  arm: string;
  rate: number;
  requests: number;
  completed: number;
  errors: number;
  firstError: string | null;
  /** Client-side TTFT (send → first content chunk through the gateway), simulated seconds. */
  ttftP50: number;
  ttftP90: number;
  ttftP99: number;
  /** Share of the step's requests whose TTFT met SLO_TTFT_MS (failed requests count as missed). */
  sloAttainment: number;
  /** The engines' own TTFT (vllm:time_to_first_token_seconds, summed over pods; bucket-interpolated). */
  engineTtftP50: number;
  engineTtftP90: number;
  outputTokensPerSec: number;
  /** vllm:prefix_cache_hits_total / vllm:prefix_cache_queries_total deltas over the step, all pods. */
  hitRate: number;
  /** Σ usage.cached_tokens / Σ usage.prompt_tokens of the step's requests (cross-check). */
  usageHitRate: number;
  preemptions: number;
  /** EPP decision latency (observer.routed), ms. */
  decisionP50Ms: number;
  decisionP99Ms: number;
  /** Requests per pod, busiest first. */
  perPod: number[];
  /** Real seconds: arrivals, then until the last answer ended. */
  sendSeconds: number;
  totalSeconds: number;
  lateSendsMs: number;
  simCpu: number;
  benchCpu: number;
}

interface Decision {
  seconds: number;
  endpoint: string;
}

/** The load generator worker, driven step by step (the latency benchmark drives it too). */
export class LoadgenClient {
  private readonly worker: Worker;
  private waiter: ((msg: FromLoadgen) => void) | null = null;
  private readonly ready: Promise<void>;

  constructor(data: LoadgenData) {
    this.worker = new Worker(new URL('./loadgen-worker.js', import.meta.url), { workerData: data });
    this.ready = this.next().then(() => undefined);
    this.worker.on('message', (msg: FromLoadgen) => {
      const w = this.waiter;
      this.waiter = null;
      w?.(msg);
    });
    this.worker.on('error', (err) => {
      console.error(`load generator failed: ${err.message}`);
    });
  }

  private next(): Promise<FromLoadgen> {
    return new Promise((resolve) => (this.waiter = resolve));
  }

  async call(msg: ToLoadgen): Promise<FromLoadgen> {
    await this.ready;
    const answer = this.next();
    this.worker.postMessage(msg);
    return answer;
  }

  async stop(): Promise<void> {
    this.worker.postMessage({ type: 'stop' } satisfies ToLoadgen);
    await this.worker.terminate();
  }
}

async function startEpp(arm: Arm, endpointsFile: string, observer: DirectorObserver, replication: ReplicationSettingsInput = {}): Promise<Epp> {
  const config = EppConfigSchema.parse({
    replication,
    logLevel: 'warn',
    gateway: { host: '127.0.0.1', port: 0 },
    extProc: { enabled: false },
    metrics: { host: '127.0.0.1', port: 0 },
    scheduler: arm.scheduler,
    ingest: { endpointsFile, endpointsPollIntervalMs: 500 },
    tokenization: { workers: 1 },
    ...(arm.latencyPredictor ? { latencyPredictor: arm.latencyPredictor } : {}),
  });
  const logger = pino({ level: 'warn', base: { arm: arm.name, ...(replication.replicaId ? { replica: replication.replicaId } : {}) } }, pino.destination(2));
  const epp = await Epp.start(config, logger, { observer });
  const deadline = Date.now() + 30_000;
  // Ready, and every pod scraped: the load scorers must see metrics from the first request on.
  while (!(epp.readiness().ready && epp.router.registry.status().filter((s) => s.metrics !== null).length === 8)) {
    if (Date.now() > deadline) throw new Error(`the EPP for ${arm.name} was not ready within 30 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return epp;
}

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

function stepResult(arm: string, rate: number, timeScale: number, records: RequestRecord[], before: PodCounters[], after: PodCounters[], decisions: Map<string, Decision>, done: Extract<FromLoadgen, { type: 'step-done' }>, cpu: { sim: number; bench: number }): StepResult {
  const ok = records.filter((r) => r.error === null && r.ttftMs !== null);
  const failed = records.filter((r) => r.error !== null);
  const ttfts = ok.map((r) => (r.ttftMs! / 1000) * timeScale);
  const hits = sum(after.map((a, i) => a.prefixHits - before[i]!.prefixHits));
  const queries = sum(after.map((a, i) => a.prefixQueries - before[i]!.prefixQueries));
  const engine = histogramSum(after.map((a, i) => histogramDelta(a.ttftBuckets, before[i]!.ttftBuckets)));
  const stepDecisions = records.map((r) => decisions.get(r.id)).filter((d): d is Decision => d !== undefined);
  const perPod = new Map<string, number>();
  for (const r of ok) if (r.endpoint !== null) perPod.set(r.endpoint, (perPod.get(r.endpoint) ?? 0) + 1);
  return {
    arm,
    rate,
    requests: records.length,
    completed: ok.length,
    errors: failed.length,
    firstError: failed[0]?.error ?? null,
    ttftP50: quantile(ttfts, 0.5),
    ttftP90: quantile(ttfts, 0.9),
    ttftP99: quantile(ttfts, 0.99),
    sloAttainment: ttfts.filter((s) => s * 1000 <= SLO_TTFT_MS).length / Math.max(1, records.length),
    engineTtftP50: histogramQuantile(engine, 0.5),
    engineTtftP90: histogramQuantile(engine, 0.9),
    outputTokensPerSec: sum(ok.map((r) => r.outputTokens)) / (done.totalSeconds * timeScale),
    hitRate: queries > 0 ? hits / queries : Number.NaN,
    usageHitRate: sum(ok.map((r) => r.cachedTokens)) / Math.max(1, sum(ok.map((r) => r.promptTokens))),
    preemptions: sum(after.map((a, i) => a.preemptions - before[i]!.preemptions)),
    decisionP50Ms: quantile(stepDecisions.map((d) => d.seconds * 1000), 0.5),
    decisionP99Ms: quantile(stepDecisions.map((d) => d.seconds * 1000), 0.99),
    perPod: [...perPod.values()].sort((a, b) => b - a),
    sendSeconds: done.sendSeconds,
    totalSeconds: done.totalSeconds,
    lateSendsMs: done.lateSendsMs,
    simCpu: cpu.sim / done.totalSeconds,
    benchCpu: cpu.bench / done.totalSeconds,
  };
}

function benchCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** One EPP, or several active-active replicas following a kv-events publisher over a private NATS. */
async function startRouters(arm: Arm, endpointsFile: string, observer: DirectorObserver): Promise<{ epps: Epp[]; stop(): Promise<void> }> {
  const replicas = arm.replicas ?? 1;
  if (replicas === 1) {
    const epp = await startEpp(arm, endpointsFile, observer);
    return { epps: [epp], stop: () => epp.stop() };
  }
  const nats = await startNats();
  const replication = { natsUrl: nats.url, snapshotIntervalMs: 10_000, streamMaxAgeMs: 600_000 };
  const publisher = await KvEventsService.start(
    KvEventsServiceConfigSchema.parse({ logLevel: 'warn', http: { host: '127.0.0.1', port: 0 }, ingest: { endpointsFile, endpointsPollIntervalMs: 500 }, replication: { ...replication, index: 'publish', replicaId: 'ingest' } }),
    pino({ level: 'warn', base: { arm: arm.name, replica: 'ingest' } }, pino.destination(2)),
  );
  const epps: Epp[] = [];
  for (let i = 1; i <= replicas; i++) epps.push(await startEpp(arm, endpointsFile, observer, { ...replication, index: 'follow', replicaId: `r${i}` }));
  return {
    epps,
    stop: async () => {
      for (const e of epps) await e.stop();
      await publisher.stop();
      await nats.dispose();
    },
  };
}

async function runArm(arm: Arm, plan: Plan, fleet: SimFleetProcess, loadgen: LoadgenClient): Promise<StepResult[]> {
  await fleet.resetPrefixCaches();
  const decisions = new Map<string, Decision>();
  const routers = await startRouters(arm, fleet.endpointsFile, {
    routed: (e) => decisions.set(e.requestId, { seconds: e.seconds, endpoint: e.endpoints[0] ?? '' }),
  });
  const results: StepResult[] = [];
  try {
    await loadgen.call({ type: 'reset' });
    const target = routers.epps.map((epp) => `http://127.0.0.1:${epp.gateway!.port}`).join(',');
    for (const rate of plan.rates) {
      const before = await fleet.counters();
      const cpu0 = { sim: fleet.cpuSeconds(), bench: benchCpuSeconds() };
      // The generator works in real time: a simulated rate r is r / timeScale real requests per second.
      // The SLO header is in real ms; the benchmark's SLO in simulated ms.
      const headers = arm.headers ? Object.fromEntries(Object.entries(arm.headers).map(([k, v]) => [k, k === 'x-llm-d-slo-ttft-ms' ? String(SLO_TTFT_MS / plan.fleet.timeScale) : v])) : undefined;
      const done = await loadgen.call({ type: 'step', target, ratePerSec: rate / plan.fleet.timeScale, seconds: plan.stepSeconds / plan.fleet.timeScale, idPrefix: `${arm.name}-${rate}`, ...(headers ? { headers } : {}) });
      if (done.type !== 'step-done') throw new Error('the load generator answered out of turn');
      // Counters are read after the last answer; the engines have published everything by then.
      const after = await fleet.counters();
      const cpu = { sim: fleet.cpuSeconds() - cpu0.sim, bench: benchCpuSeconds() - cpu0.bench };
      const r = stepResult(arm.name, rate, plan.fleet.timeScale, done.records, before, after, decisions, done, cpu);
      results.push(r);
      console.log(
        `  ${arm.name.padEnd(16)} rate ${String(rate).padStart(3)}/s: ${r.completed}/${r.requests} ok, TTFT p50 ${fmtS(r.ttftP50)} p90 ${fmtS(r.ttftP90)} (engine p90 ${fmtS(r.engineTtftP90)}), SLO ${SLO_TTFT_MS} ms met ${(r.sloAttainment * 100).toFixed(1)}%, ` +
          `${r.outputTokensPerSec.toFixed(0)} tok/s, hit ${(r.hitRate * 100).toFixed(1)}%, decision p50 ${r.decisionP50Ms.toFixed(2)} ms p99 ${r.decisionP99Ms.toFixed(2)} ms, ` +
          `pods ${r.perPod.join('/')}, ${r.totalSeconds.toFixed(1)} s, sim CPU ${(r.simCpu * 100).toFixed(0)}%, bench CPU ${(r.benchCpu * 100).toFixed(0)}%, late ${r.lateSendsMs.toFixed(0)} ms` +
          (r.errors > 0 ? `, ${r.errors} errors (${r.firstError})` : ''),
      );
      decisions.clear();
    }
  } finally {
    await routers.stop();
  }
  return results;
}

function fmtS(s: number): string {
  if (!Number.isFinite(s)) return '–';
  return s >= 10 ? `${s.toFixed(1)} s` : s >= 1 ? `${s.toFixed(2)} s` : `${(s * 1000).toFixed(0)} ms`;
}

export async function runRoutingBenchmark({ quick }: { quick: boolean }): Promise<void> {
  const started = performance.now();
  const plan = planFor(quick);
  const tok = await LocalTokenizer.bundled(MODEL);
  plan.workload.charsPerToken = charsFor(tok, 4000) / 4000;
  const probe = new Workload(plan.workload);
  console.log(
    `routing: ${plan.fleet.pods} pods × ${plan.fleet.numGpuBlocks} blocks of ${plan.fleet.blockSize} tokens (${plan.fleet.numGpuBlocks * plan.fleet.blockSize} tokens each); ` +
      `${plan.workload.groups} system prompts of ${plan.workload.systemTokens.min}–${plan.workload.systemTokens.max} tokens (~${probe.systemPromptTokens} together); ` +
      `rates ${plan.rates.join(', ')} req/s × ${plan.stepSeconds} s; time scale ${plan.fleet.timeScale}`,
  );
  const fleet = await SimFleetProcess.start(plan.fleet);
  const loadgen = new LoadgenClient({ workload: plan.workload, requestTimeoutMs: 600_000 });
  const results: StepResult[] = [];
  try {
    for (const arm of plan.arms) results.push(...(await runArm(arm, plan, fleet, loadgen)));
  } finally {
    await loadgen.stop();
    await fleet.stop();
  }
  report(plan, results, (performance.now() - started) / 1000, quick);
}

function report(plan: Plan, results: StepResult[], seconds: number, quick: boolean): void {
  const rows = results.map((r) => [
    r.arm,
    String(r.rate),
    fmtS(r.ttftP50),
    fmtS(r.ttftP90),
    r.outputTokensPerSec.toFixed(0),
    `${(r.hitRate * 100).toFixed(1)}%`,
    `${r.completed}/${r.errors}`,
    `${r.perPod[0] ?? 0}/${r.perPod[r.perPod.length - 1] ?? 0}`,
  ]);
  printTable(
    `routing quality: ${plan.fleet.pods} simulated pods, shared-prefix multi-turn chat (TTFT in simulated seconds; time scale ${plan.fleet.timeScale})`,
    ['arm', 'rate/s', 'TTFT p50', 'TTFT p90', 'output tok/s', 'prefix hit', 'ok/errors', 'busiest/idlest pod'],
    rows,
  );
  const top = plan.rates[plan.rates.length - 1]!;
  const atTop = (arm: string): StepResult | undefined => results.find((r) => r.arm === arm && r.rate === top);
  printTable(
    `TTFT SLO attainment: share of requests with TTFT ≤ ${SLO_TTFT_MS} ms (simulated); the predicted-latency arm sends the SLO as x-llm-d-slo-ttft-ms`,
    ['arm', ...plan.rates.map((r) => `${r}/s`)],
    plan.arms.map((a) => [a.name, ...plan.rates.map((rate) => {
      const r = results.find((x) => x.arm === a.name && x.rate === rate);
      return r ? `${(r.sloAttainment * 100).toFixed(1)}%` : '–';
    })]),
  );
  printTable(
    `EPP decision latency at ${top} req/s (observer.routed: parse, tokenize, score, pick, hooks; real ms)`,
    ['arm', 'p50', 'p99'],
    plan.arms.map((a) => [a.name, atTop(a.name)?.decisionP50Ms.toFixed(2) ?? '–', atTop(a.name)?.decisionP99Ms.toFixed(2) ?? '–']),
  );
  const precise = atTop('precise');
  const rr = atTop('round-robin');
  const approx = atTop('approximate');
  const goals = {
    ttftP90VsRoundRobin: precise && rr ? rr.ttftP90 / precise.ttftP90 : Number.NaN,
    hitRateVsApproximate: precise && approx ? precise.hitRate - approx.hitRate : Number.NaN,
    ttftP90VsApproximate: precise && approx ? approx.ttftP90 / precise.ttftP90 : Number.NaN,
  };
  const replicated = plan.arms.some((a) => a.name === 'precise-3-replicas') && plan.arms.some((a) => a.name === 'precise');
  if (replicated) {
    // Per rate and on average: one rate's p90 swings with the machine's noise more than with the router.
    const pairs = plan.rates.map((rate) => ({ rate, one: results.find((r) => r.arm === 'precise' && r.rate === rate), three: results.find((r) => r.arm === 'precise-3-replicas' && r.rate === rate) })).filter((p) => p.one && p.three);
    const meanHit = (k: 'one' | 'three'): number => pairs.reduce((a, p) => a + p[k]!.hitRate, 0) / pairs.length;
    console.log(
      `3 replicas vs 1: prefix hit ${(meanHit('three') * 100).toFixed(1)}% vs ${(meanHit('one') * 100).toFixed(1)}% (mean over rates); TTFT p90 ratio (3/1) per rate: ` +
        pairs.map((p) => `${p.rate}/s ${(p.three!.ttftP90 / p.one!.ttftP90).toFixed(2)}`).join(', '),
    );
  }
  if (precise && rr && approx) console.log(
    `goals at ${top} req/s: precise TTFT p90 ${goals.ttftP90VsRoundRobin.toFixed(1)}× better than round-robin (goal ≥ 50×: ${goals.ttftP90VsRoundRobin >= 50 ? 'met' : 'NOT met'}); ` +
      `hit rate ${(goals.hitRateVsApproximate * 100).toFixed(1)} points above approximate (${goals.hitRateVsApproximate > 0 ? 'met' : 'NOT met'}); ` +
      `TTFT p90 ${goals.ttftP90VsApproximate.toFixed(2)}× approximate's (${goals.ttftP90VsApproximate > 1 ? 'met' : 'NOT met'})`,
  );
  console.log(`run time ${(seconds / 60).toFixed(1)} min`);
  // The full run's chart is committed; a quick or partial run's goes next to its (git-ignored) results.
  const chartDir = new URL(quick || plan.arms.length < ARMS.length ? '../../results/' : '../../charts/', import.meta.url);
  mkdirSync(chartDir, { recursive: true });
  const svg = ttftChart({
    title: `TTFT p90 vs request rate — ${plan.fleet.pods} simulated vLLM pods, shared-prefix multi-turn chat`,
    xLabel: 'request rate (req/s)',
    yLabel: 'TTFT p90 (s, log scale)',
    series: plan.arms.map((a) => ({ name: a.name, points: results.filter((r) => r.arm === a.name).map((r) => ({ x: r.rate, y: r.ttftP90 })) })),
  });
  const chartName = quick ? 'routing-quick-ttft-p90.svg' : 'routing-ttft-p90.svg';
  writeFileSync(new URL(chartName, chartDir), svg);
  console.log(`→ bench/${quick ? 'results' : 'charts'}/${chartName}`);
  writeResult(quick ? 'routing-quick' : 'routing', {
    quick,
    runSeconds: seconds,
    fleet: plan.fleet,
    workload: plan.workload,
    rates: plan.rates,
    stepSeconds: plan.stepSeconds,
    arms: plan.arms.map((a) => ({ name: a.name, description: a.description, scheduler: a.scheduler })),
    goals,
    results,
  });
}
