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
import type { AnyWorkloadSpec, FromLoadgen, LoadgenData, RequestRecord, ToLoadgen } from './loadgen-worker.js';
import { histogramDelta, histogramQuantile, histogramSum, quantile, spreadOf, type Spread } from './stats.js';
import { TraceWorkload, type TraceWorkloadSpec } from './trace-workload.js';
import { llmdChatSpec, Workload } from './workload.js';

const MODEL = 'Qwen/Qwen3-0.6B';

export type WorkloadName = 'chat' | 'trace';

export interface RoutingBenchmarkOptions {
  quick: boolean;
  /** Runs of every configuration, each with its own seed (workload and arrivals); medians and spreads are reported. */
  repeat?: number;
  /** Sweep KV per pod (each size runs every rate) in one command. */
  sweep?: boolean;
  workloads?: WorkloadName[];
}

interface Plan {
  fleet: FleetSpec;
  workloads: { name: WorkloadName; spec: AnyWorkloadSpec }[];
  /** KV blocks per pod, one fleet each. */
  kvBlocks: number[];
  /** Requests per (simulated) second, one step each, lowest first. */
  rates: number[];
  /** Simulated seconds of arrivals per step (the step then drains). */
  stepSeconds: number;
  arms: Arm[];
  repeat: number;
}

/** The arms every comparison needs in the same run. */
const CORE_ARMS = ['round-robin', 'approximate', 'precise'];

function traceSpec(seed: number): TraceWorkloadSpec {
  return {
    kind: 'trace',
    seed,
    model: MODEL,
    // 200 tenants (Zipf 1), 24 shared documents of 2–8 k tokens (~120 k tokens, Zipf 0.8): as much
    // KV pressure as the chat shape, from a different structure.
    tenants: 200,
    tenantSkew: 1,
    tenantPromptTokens: { min: 100, max: 400 },
    documents: 24,
    documentTokens: { min: 2000, max: 8000 },
    documentSkew: 0.8,
    sessionTurns: { min: 1, max: 4 },
    questionTokens: { min: 50, max: 300 },
    outputTokens: { min: 32, max: 160 },
    burstShare: 0.4,
    burstSize: { min: 4, max: 16 },
    burstSpreadMs: 1000,
    charsPerToken: 0,
  };
}

function planFor(options: RoutingBenchmarkOptions): Plan {
  const quick = options.quick;
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
  const repeat = options.repeat ?? 1;
  const comparing = repeat > 1 || options.sweep === true;
  const workloads = (options.workloads ?? ['chat']).map((name) => ({ name, spec: name === 'trace' ? traceSpec(7) : llmdChatSpec(7, MODEL) }));
  const plan: Plan = {
    fleet,
    workloads,
    kvBlocks: options.sweep ? (quick ? [2048, 8192] : [2048, 4096, 8192]) : [fleet.numGpuBlocks],
    rates: quick ? [8, 24, 40] : [8, 16, 24, 32, 40],
    stepSeconds: quick ? 8 : 20,
    // Repeats and sweeps compare the three core arms (others on request); a single run keeps every arm.
    arms: comparing ? ARMS.filter((a) => CORE_ARMS.includes(a.name)) : ARMS,
    repeat,
  };
  // For exploring other regimes without editing the file; the README's figures say which they use.
  const env = process.env;
  if (env['KVIX_ROUTING_RATES']) plan.rates = env['KVIX_ROUTING_RATES'].split(',').map(Number);
  if (env['KVIX_ROUTING_STEP_SECONDS']) plan.stepSeconds = Number(env['KVIX_ROUTING_STEP_SECONDS']);
  if (env['KVIX_ROUTING_TIME_SCALE']) fleet.timeScale = Number(env['KVIX_ROUTING_TIME_SCALE']);
  if (env['KVIX_ROUTING_GPU_BLOCKS']) plan.kvBlocks = env['KVIX_ROUTING_GPU_BLOCKS'].split(',').map(Number);
  if (env['KVIX_ROUTING_GROUPS']) for (const w of workloads) if (w.spec.kind !== 'trace') w.spec.groups = Number(env['KVIX_ROUTING_GROUPS']);
  if (env['KVIX_ROUTING_ARMS']) {
    const names = env['KVIX_ROUTING_ARMS'].split(',');
    // Precise, approximate and round-robin are always measured together: a figure without its baselines from the same run is not reported.
    plan.arms = ARMS.filter((a) => names.includes(a.name) || (comparing && CORE_ARMS.includes(a.name)));
  }
  return plan;
}

export interface StepResult {
  workload: WorkloadName;
  kvBlocks: number;
  /** 0-based repeat, and the seed its workload and arrivals were drawn from. */
  repeat: number;
  seed: number;
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

function stepResult(tags: RunTags, arm: string, rate: number, timeScale: number, records: RequestRecord[], before: PodCounters[], after: PodCounters[], decisions: Map<string, Decision>, done: Extract<FromLoadgen, { type: 'step-done' }>, cpu: { sim: number; bench: number }): StepResult {
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
    ...tags,
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

interface RunTags {
  workload: WorkloadName;
  kvBlocks: number;
  repeat: number;
  seed: number;
}

async function runArm(arm: Arm, plan: Plan, fleet: SimFleetProcess, loadgen: LoadgenClient, tags: RunTags): Promise<StepResult[]> {
  await fleet.resetPrefixCaches();
  const decisions = new Map<string, Decision>();
  const routers = await startRouters(arm, fleet.endpointsFile, {
    routed: (e) => decisions.set(e.requestId, { seconds: e.seconds, endpoint: e.endpoints[0] ?? '' }),
  });
  const results: StepResult[] = [];
  try {
    await loadgen.call({ type: 'reset', seed: tags.seed });
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
      const r = stepResult(tags, arm.name, rate, plan.fleet.timeScale, done.records, before, after, decisions, done, cpu);
      results.push(r);
      console.log(
        `  [${tags.workload} kv ${tags.kvBlocks} #${tags.repeat + 1}] ${arm.name.padEnd(16)} rate ${String(rate).padStart(3)}/s: ${r.completed}/${r.requests} ok, TTFT p50 ${fmtS(r.ttftP50)} p90 ${fmtS(r.ttftP90)} (engine p90 ${fmtS(r.engineTtftP90)}), SLO ${SLO_TTFT_MS} ms met ${(r.sloAttainment * 100).toFixed(1)}%, ` +
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

export async function runRoutingBenchmark(options: RoutingBenchmarkOptions): Promise<void> {
  const started = performance.now();
  const plan = planFor(options);
  const tok = await LocalTokenizer.bundled(MODEL);
  const charsPerToken = charsFor(tok, 4000) / 4000;
  for (const w of plan.workloads) w.spec.charsPerToken = charsPerToken;
  for (const w of plan.workloads) {
    const shape = w.spec.kind === 'trace' ? `${w.spec.tenants} tenants, ${w.spec.documents} shared documents of ${w.spec.documentTokens.min}–${w.spec.documentTokens.max} tokens (~${new TraceWorkload(w.spec).documentTokens} together), ${w.spec.burstShare * 100}% of requests in bursts` : `${w.spec.groups} system prompts of ${w.spec.systemTokens.min}–${w.spec.systemTokens.max} tokens (~${new Workload(w.spec).systemPromptTokens} together)`;
    console.log(`routing workload ${w.name}: ${shape}`);
  }
  console.log(
    `routing: ${plan.fleet.pods} pods × ${plan.kvBlocks.join(' / ')} blocks of ${plan.fleet.blockSize} tokens; rates ${plan.rates.join(', ')} req/s × ${plan.stepSeconds} s; ` +
      `arms ${plan.arms.map((a) => a.name).join(', ')}; ${plan.repeat} repeat(s); time scale ${plan.fleet.timeScale}`,
  );
  const results: StepResult[] = [];
  // An interrupted run (Ctrl-C, a timeout's SIGTERM) takes its simulator process with it.
  let fleet: SimFleetProcess | null = null;
  const interrupted = (signal: NodeJS.Signals): void => {
    console.error(`routing: ${signal}, stopping the simulated pods`);
    void (fleet?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  for (const w of plan.workloads) {
    for (const kvBlocks of plan.kvBlocks) {
      fleet = await SimFleetProcess.start({ ...plan.fleet, numGpuBlocks: kvBlocks });
      const loadgen = new LoadgenClient({ workload: w.spec, requestTimeoutMs: 600_000 });
      try {
        for (let repeat = 0; repeat < plan.repeat; repeat++) {
          const seed = w.spec.seed + 1000 * repeat;
          // The arms' order turns with each repeat, so a drift in the machine's load does not always fall on the same arm.
          const arms = plan.arms.map((_, i) => plan.arms[(i + repeat) % plan.arms.length]!);
          for (const arm of arms) results.push(...(await runArm(arm, plan, fleet, loadgen, { workload: w.name, kvBlocks, repeat, seed })));
        }
      } finally {
        await loadgen.stop();
        await fleet.stop();
        fleet = null;
      }
    }
  }
  process.off('SIGINT', interrupted);
  process.off('SIGTERM', interrupted);
  report(plan, results, (performance.now() - started) / 1000, options);
}

/** Median and range of one figure over the repeats of a configuration. */
export interface Aggregate {
  workload: WorkloadName;
  kvBlocks: number;
  arm: string;
  rate: number;
  repeats: number;
  ttftP50: Spread;
  ttftP90: Spread;
  hitRate: Spread;
  outputTokensPerSec: Spread;
  sloAttainment: Spread;
  decisionP50Ms: Spread;
  decisionP99Ms: Spread;
  errors: number;
}

export interface GoalCheck {
  workload: WorkloadName;
  kvBlocks: number;
  rate: number;
  /** Median round-robin TTFT p90 / median precise TTFT p90, and the same ratio per repeat (its spread). */
  ttftP90VsRoundRobin: { ofMedians: number; perRepeat: Spread };
  ttftP90VsApproximate: { ofMedians: number; perRepeat: Spread };
  hitRateVsApproximate: { ofMedians: number; perRepeat: Spread };
  met: { vsRoundRobin: boolean; vsApproximate: boolean };
}

function aggregate(results: readonly StepResult[]): Aggregate[] {
  const groups = new Map<string, StepResult[]>();
  for (const r of results) {
    const key = `${r.workload}|${r.kvBlocks}|${r.arm}|${r.rate}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  return [...groups.values()].map((rs) => {
    const of = (f: (r: StepResult) => number): Spread => spreadOf(rs.map(f));
    return {
      workload: rs[0]!.workload,
      kvBlocks: rs[0]!.kvBlocks,
      arm: rs[0]!.arm,
      rate: rs[0]!.rate,
      repeats: rs.length,
      ttftP50: of((r) => r.ttftP50),
      ttftP90: of((r) => r.ttftP90),
      hitRate: of((r) => r.hitRate),
      outputTokensPerSec: of((r) => r.outputTokensPerSec),
      sloAttainment: of((r) => r.sloAttainment),
      decisionP50Ms: of((r) => r.decisionP50Ms),
      decisionP99Ms: of((r) => r.decisionP99Ms),
      errors: rs.reduce((a, r) => a + r.errors, 0),
    };
  });
}

function goalsOf(plan: Plan, results: readonly StepResult[], aggregates: readonly Aggregate[]): GoalCheck[] {
  const top = plan.rates[plan.rates.length - 1]!;
  const out: GoalCheck[] = [];
  for (const w of plan.workloads) {
    for (const kvBlocks of plan.kvBlocks) {
      const agg = (arm: string): Aggregate | undefined => aggregates.find((a) => a.workload === w.name && a.kvBlocks === kvBlocks && a.arm === arm && a.rate === top);
      const step = (arm: string, repeat: number): StepResult | undefined => results.find((r) => r.workload === w.name && r.kvBlocks === kvBlocks && r.arm === arm && r.rate === top && r.repeat === repeat);
      const precise = agg('precise');
      const rr = agg('round-robin');
      const approx = agg('approximate');
      if (!precise || !rr || !approx) continue;
      const perRepeat = (f: (p: StepResult, other: StepResult) => number, other: string): Spread =>
        spreadOf(Array.from({ length: plan.repeat }, (_, i) => {
          const p = step('precise', i);
          const o = step(other, i);
          return p && o ? f(p, o) : Number.NaN;
        }).filter((v) => Number.isFinite(v)));
      const vsRr = rr.ttftP90.median / precise.ttftP90.median;
      const vsApprox = approx.ttftP90.median / precise.ttftP90.median;
      out.push({
        workload: w.name,
        kvBlocks,
        rate: top,
        ttftP90VsRoundRobin: { ofMedians: vsRr, perRepeat: perRepeat((p, o) => o.ttftP90 / p.ttftP90, 'round-robin') },
        ttftP90VsApproximate: { ofMedians: vsApprox, perRepeat: perRepeat((p, o) => o.ttftP90 / p.ttftP90, 'approximate') },
        hitRateVsApproximate: { ofMedians: precise.hitRate.median - approx.hitRate.median, perRepeat: perRepeat((p, o) => p.hitRate - o.hitRate, 'approximate') },
        met: { vsRoundRobin: vsRr >= 50, vsApproximate: vsApprox >= 1.5 },
      });
    }
  }
  return out;
}

function fmtSpread(s: Spread, f: (v: number) => string): string {
  if (s.count <= 1) return f(s.median);
  return `${f(s.median)} [${f(s.min)}–${f(s.max)}]`;
}

function pct(v: number): string {
  return Number.isFinite(v) ? `${(v * 100).toFixed(1)}%` : '–';
}

function report(plan: Plan, results: StepResult[], seconds: number, options: RoutingBenchmarkOptions): void {
  const quick = options.quick;
  const aggregates = aggregate(results);
  const goals = goalsOf(plan, results, aggregates);
  const top = plan.rates[plan.rates.length - 1]!;
  const several = plan.repeat > 1;
  for (const w of plan.workloads) {
    for (const kvBlocks of plan.kvBlocks) {
      const rows = aggregates.filter((a) => a.workload === w.name && a.kvBlocks === kvBlocks);
      printTable(
        `routing quality — ${w.name} workload, ${plan.fleet.pods} pods × ${kvBlocks} KV blocks: TTFT (simulated s; time scale ${plan.fleet.timeScale})${several ? `, median [min–max] of ${plan.repeat} repeats` : ''}`,
        ['arm', 'rate/s', 'TTFT p50', 'TTFT p90', 'output tok/s', 'prefix hit', `SLO ${SLO_TTFT_MS} ms met`, 'errors'],
        rows.map((a) => [a.arm, String(a.rate), fmtSpread(a.ttftP50, fmtS), fmtSpread(a.ttftP90, fmtS), fmtSpread(a.outputTokensPerSec, (v) => v.toFixed(0)), fmtSpread(a.hitRate, pct), fmtSpread(a.sloAttainment, pct), String(a.errors)]),
      );
      printTable(
        `EPP decision latency at ${top} req/s (observer.routed: parse, tokenize, score, pick, hooks; real ms)${several ? ', median [min–max]' : ''}`,
        ['arm', 'p50', 'p99'],
        rows.filter((a) => a.rate === top).map((a) => [a.arm, fmtSpread(a.decisionP50Ms, (v) => v.toFixed(2)), fmtSpread(a.decisionP99Ms, (v) => v.toFixed(2))]),
      );
    }
  }
  const replicated = plan.arms.some((a) => a.name === 'precise-3-replicas') && plan.arms.some((a) => a.name === 'precise');
  if (replicated) {
    // Per rate and on average: one rate's p90 swings with the machine's noise more than with the router.
    const mine = aggregates.filter((a) => a.workload === plan.workloads[0]!.name && a.kvBlocks === plan.kvBlocks[0]);
    const pairs = plan.rates.map((rate) => ({ rate, one: mine.find((r) => r.arm === 'precise' && r.rate === rate), three: mine.find((r) => r.arm === 'precise-3-replicas' && r.rate === rate) })).filter((p) => p.one && p.three);
    const meanHit = (k: 'one' | 'three'): number => pairs.reduce((a, p) => a + p[k]!.hitRate.median, 0) / pairs.length;
    console.log(
      `3 replicas vs 1: prefix hit ${(meanHit('three') * 100).toFixed(1)}% vs ${(meanHit('one') * 100).toFixed(1)}% (mean over rates); TTFT p90 ratio (3/1) per rate: ` +
        pairs.map((p) => `${p.rate}/s ${(p.three!.ttftP90.median / p.one!.ttftP90.median).toFixed(2)}`).join(', '),
    );
  }
  for (const g of goals) {
    const r = (s: Spread): string => (s.count > 1 ? ` (per repeat ${s.min.toFixed(2)}–${s.max.toFixed(2)})` : '');
    console.log(
      `goals, ${g.workload} kv ${g.kvBlocks} at ${g.rate} req/s${several ? ` (medians of ${plan.repeat})` : ''}: precise TTFT p90 ${g.ttftP90VsRoundRobin.ofMedians.toFixed(1)}× better than round-robin${r(g.ttftP90VsRoundRobin.perRepeat)} (≥ 50×: ${g.met.vsRoundRobin ? 'met' : 'NOT met'}); ` +
        `${g.ttftP90VsApproximate.ofMedians.toFixed(2)}× better than approximate${r(g.ttftP90VsApproximate.perRepeat)} (≥ 1.5×: ${g.met.vsApproximate ? 'met' : 'NOT met'}); ` +
        `hit rate ${(g.hitRateVsApproximate.ofMedians * 100).toFixed(1)} points above approximate`,
    );
  }
  console.log(`run time ${(seconds / 60).toFixed(1)} min`);
  // The default full run's chart is committed; every other run's goes next to its (git-ignored) results.
  const canonical = !quick && plan.arms.length === ARMS.length && plan.repeat === 1 && !options.sweep && plan.workloads.length === 1 && plan.workloads[0]!.name === 'chat';
  const chartDir = new URL(canonical ? '../../charts/' : '../../results/', import.meta.url);
  mkdirSync(chartDir, { recursive: true });
  const name = resultName(plan, options);
  for (const w of plan.workloads) {
    for (const kvBlocks of plan.kvBlocks) {
      const svg = ttftChart({
        title: `TTFT p90 vs request rate — ${w.name} workload, ${plan.fleet.pods} simulated pods × ${kvBlocks} KV blocks${several ? ` (median, min–max of ${plan.repeat})` : ''}`,
        xLabel: 'request rate (req/s)',
        yLabel: 'TTFT p90 (s, log scale)',
        series: plan.arms.map((a) => ({
          name: a.name,
          points: aggregates.filter((r) => r.workload === w.name && r.kvBlocks === kvBlocks && r.arm === a.name).map((r) => ({ x: r.rate, y: r.ttftP90.median, ...(r.ttftP90.count > 1 ? { lo: r.ttftP90.min, hi: r.ttftP90.max } : {}) })),
        })),
      });
      const chartName = canonical ? 'routing-ttft-p90.svg' : `${resultName(plan, options, false)}-${w.name}-kv${kvBlocks}-ttft-p90.svg`;
      writeFileSync(new URL(chartName, chartDir), svg);
      console.log(`→ bench/${canonical ? 'charts' : 'results'}/${chartName}`);
    }
  }
  writeResult(name, {
    quick,
    repeat: plan.repeat,
    sweep: options.sweep === true,
    runSeconds: seconds,
    fleet: plan.fleet,
    kvBlocks: plan.kvBlocks,
    workloads: plan.workloads,
    rates: plan.rates,
    stepSeconds: plan.stepSeconds,
    arms: plan.arms.map((a) => ({ name: a.name, description: a.description, scheduler: a.scheduler })),
    goals,
    aggregates,
    results,
  });
}

function resultName(plan: Plan, options: RoutingBenchmarkOptions, withWorkloads = true): string {
  const parts = ['routing'];
  if (options.quick) parts.push('quick');
  if (options.sweep) parts.push('sweep');
  if (plan.repeat > 1) parts.push(`x${plan.repeat}`);
  const names = plan.workloads.map((w) => w.name);
  if (withWorkloads && (names.length !== 1 || names[0] !== 'chat')) parts.push(names.join('+'));
  return parts.join('-');
}
