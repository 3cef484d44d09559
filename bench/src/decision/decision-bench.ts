import { writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector';
import { availableParallelism, loadavg } from 'node:os';
import { monitorEventLoopDelay, performance as perf } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { Epp, EppConfigSchema } from '@kvix/epp';
import { parseOpenAiBody, type DecisionTimings, type RoutedRequest } from '@kvix/scheduler';
import { InMemoryIndex, scoreLookup, tierWeights } from '@kvix/kv-index';
import { freePorts } from '@kvix/test-support';
import { defaultWorkers, LocalTokenizer, PrefixKeyCache, type PieceTrace } from '@kvix/tokenization';
import { pino } from 'pino';
import { printTable, writeResult } from '../harness.js';
import { ARMS, type Arm } from '../routing/arms.js';
import { Workload } from '../routing/workload.js';
import { charsFor } from '../text.js';
import type { FleetWorkerData, FromFleet, ToFleet } from './fleet-worker.js';
import type { FromIndexThread, ToIndexThread } from './index-thread.js';
import { countStageInstructions, type StageInstructions } from './instructions.js';
import { decisionWorkloadSpec } from './workload-spec.js';

const MODEL = 'Qwen/Qwen3-0.6B';
const PODS = 8;
const PATH = '/v1/chat/completions';
/** The decision-latency goal's bound for the throughput figure. */
const THROUGHPUT_P99_MS = 5;

export interface DecisionBenchmarkOptions {
  quick?: boolean;
  /** Print one JSON document instead of tables. */
  json?: boolean;
  /** Only the warm-up and the stage-by-stage profile (no latency phases, no throughput ladder). */
  profileOnly?: boolean;
  /** Leave out the arms with other tokenizer threads than the default (1 and 2) and the scaling phase. */
  noScaling?: boolean;
  /** Only count each stage's instructions under callgrind (valgrind; several minutes). */
  instructionsOnly?: boolean;
}

/** What `kvix bench decision --json` prints. */
export interface DecisionBenchmarkSummary {
  preciseP50Ms: number;
  preciseP99Ms: number;
  approximateP50Ms: number;
  approximateP99Ms: number;
  roundRobinP50Ms: number;
  roundRobinP99Ms: number;
  /** Tokenizer threads of the arms as deployed on this machine (defaultWorkers). */
  tokenizerThreads: number;
  /** The precise profile with one tokenizer thread, same run (when that is not the default). */
  preciseThreadP50Ms: number;
  preciseThreadP99Ms: number;
  /** Highest open-loop rate of precise decisions whose p99 stayed ≤ 5 ms (0 if none did). */
  decisionsPerSec: number;
  /** The rate the latency figures above were taken at. */
  ratePerSec: number;
  loadAverage: number[];
  phases: PhaseResult[];
  stages: StageRow[];
  isolated: Record<string, IsolatedStage>;
  throughput: { ratePerSec: number; achievedPerSec: number; p50Ms: number; p99Ms: number; pass: boolean }[];
  /** Closed-loop saturation of the precise profile by tokenizer threads (0: all on the event loop). */
  scaling: {
    variant: string;
    tokenizerThreads: number;
    decisionsPerSec: number[];
    p50Ms: number;
    p99Ms: number;
    errors: number;
    /** CPU (all the EPP's threads) and event-loop CPU per decision while saturated, ms. */
    cpuMsPerDecision: number;
    eventLoopCpuMsPerDecision: number;
    /** Decisions/s the measured CPU allows on idle cores: one core, and two (event loop serial). */
    boundPerSec: { oneCore: number; twoCores: number };
  }[];
  ingest: { batchesPerSec: number; blocksStoredPerSec: number; blocksRemovedPerSec: number };
}

interface IsolatedStage {
  /** Thread CPU time per request (what the stage costs whatever the machine's load). */
  cpuMeanMs: number;
  p50Ms: number;
  p99Ms: number;
}

interface PhaseResult {
  arm: string;
  ratePerSec: number;
  decisions: number;
  errors: number;
  /** Rejections by code (an endpoint that missed its metrics scrape leaves the candidate set). */
  errorCodes: Record<string, number>;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Main thread event-loop utilisation over the phase (all arms' slices). */
  eventLoopUtilization: number;
  eventLoopDelayP99Ms: number;
  lateMs: number;
}

interface StageRow {
  arm: string;
  ratePerSec: number;
  /** Per stage: mean and p99 of the stage's own time, ms. */
  stages: Record<string, { meanMs: number; p99Ms: number }>;
}

interface ArmDef {
  label: string;
  arm: Arm;
  /** Tokenizer threads of its EPP. */
  workers: number;
  /** Measured only in the scaling phase. */
  scalingOnly?: boolean;
}

/** An arm under test: its EPP, the fleet its decisions go to, and the workload it replays. */
interface ArmRun {
  arm: Arm;
  label: string;
  workers: number;
  scalingOnly: boolean;
  fleet: number;
  epp: Epp;
  bodies: Buffer[];
  outputTokens: number[];
  next: number;
  samples: Sample[] | null;
  errors: number;
  errorCodes: Map<string, number>;
  open: Map<number, RoutedRequest>;
  /** The fleet's pod index of each serving port. */
  podOfPort: Map<number, number>;
}

interface Sample {
  ms: number;
  timings: DecisionTimings;
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function sortedOf(values: readonly number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

class FleetClient {
  private readonly worker: Worker;
  private readonly waiting: ((m: FromFleet) => void)[] = [];
  onFinished: (fleet: number, seq: number) => void = () => undefined;

  constructor(data: FleetWorkerData) {
    this.worker = new Worker(new URL('./fleet-worker.js', import.meta.url), { workerData: data });
    this.worker.on('message', (m: FromFleet) => {
      if (m.type === 'finished') this.onFinished(m.fleet, m.seq);
      else this.waiting.shift()?.(m);
    });
    this.worker.on('error', (err) => console.error(`fleet worker failed: ${err.message}`));
  }

  next(): Promise<FromFleet> {
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  post(msg: ToFleet): void {
    this.worker.postMessage(msg);
  }

  async counters(): Promise<Extract<FromFleet, { type: 'counters' }>> {
    const answer = this.next();
    this.post({ type: 'counters' });
    return (await answer) as Extract<FromFleet, { type: 'counters' }>;
  }

  async stop(): Promise<void> {
    this.post({ type: 'stop' });
    await new Promise((r) => setTimeout(r, 200));
    await this.worker.terminate();
  }
}


async function startEpp(arm: Arm, workers: number, pods: { servingPort: number; eventPort: number }[], observer: (id: string, seconds: number, timings: DecisionTimings) => void): Promise<Epp> {
  const config = EppConfigSchema.parse({
    logLevel: 'warn',
    gateway: { enabled: false },
    extProc: { enabled: false },
    metrics: { host: '127.0.0.1', port: 0 },
    scheduler: arm.scheduler,
    ingest: { pods: pods.map((p, i) => ({ name: `pod-${i}`, address: '127.0.0.1', port: p.servingPort, eventPort: p.eventPort, replayPort: null, model: MODEL })) },
    tokenization: { workers },
  });
  const epp = await Epp.start(config, pino({ level: 'warn', base: { arm: arm.name, workers } }, pino.destination(2)), { observer: { routed: (e) => observer(e.requestId, e.seconds, e.timings) } });
  const deadline = Date.now() + 30_000;
  while (!(epp.readiness().ready && epp.router.registry.status().filter((s) => s.metrics !== null).length === PODS)) {
    if (Date.now() > deadline) throw new Error(`the EPP for ${arm.name} was not ready within 30 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return epp;
}

/**
 * Only the arm whose turn it is scrapes its pods' metrics (8 pods every 100 ms, as a deployed EPP
 * would): five EPPs scraping at once in this one process would bill each for the others' work.
 */
let activeRun: ArmRun | null = null;
async function activate(run: ArmRun): Promise<void> {
  if (activeRun !== run) {
    activeRun?.epp.router.registry.stop();
    activeRun = run;
    run.epp.router.registry.start();
  }
  // Every pod a candidate, with fresh metrics, before the first decision: a scrape that timed out
  // while the machine was saturated takes a pod out of the candidate set until the next succeeds.
  const registry = run.epp.router.registry;
  const deadline = Date.now() + 10_000;
  while ((registry.candidates().length < PODS || registry.status().some((s) => s.metrics === null || Date.now() - s.metrics.scrapedAt > 500)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}

/**
 * Sends `arm` requests at `ratePerSec` (Poisson arrivals) for `seconds`, straight into the
 * director (no transport: the decision is what is measured). Returns how late the latest arrival
 * was sent.
 */
async function drive(run: ArmRun, fleet: FleetClient, ratePerSec: number, seconds: number): Promise<number> {
  await activate(run);
  const director = run.epp.router.director;
  const t0 = performance.now();
  let at = 0;
  let late = 0;
  const pending: Promise<void>[] = [];
  for (;;) {
    at += (-Math.log(1 - Math.random()) / ratePerSec) * 1000;
    if (at >= seconds * 1000) break;
    const wait = t0 + at - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    late = Math.max(late, performance.now() - (t0 + at));
    const seq = run.next++;
    if (seq >= run.bodies.length) throw new Error(`the benchmark prepared ${run.bodies.length} requests for ${run.arm.name}; it needs more`);
    pending.push(
      director.route({ requestId: `${run.fleet}:${seq}`, path: PATH, headers: { 'content-type': 'application/json' }, body: run.bodies[seq]! }).then((outcome) => {
        if (!outcome.ok) {
          run.errors++;
          run.errorCodes.set(outcome.rejection.code, (run.errorCodes.get(outcome.rejection.code) ?? 0) + 1);
          return;
        }
        run.open.set(seq, outcome.routed);
        fleet.post({ type: 'routed', fleet: run.fleet, seq, pod: run.podOfPort.get(outcome.routed.endpoints[0]!.port)!, outputTokens: run.outputTokens[seq]! });
      }),
    );
  }
  await Promise.all(pending);
  return late;
}

/** `concurrency` decisions in flight for `seconds` (or `maxRequests`): routed decisions/s and how many. */
async function saturate(run: ArmRun, fleet: FleetClient, concurrency: number, seconds: number, maxRequests: number): Promise<{ perSec: number; decisions: number }> {
  await activate(run);
  const director = run.epp.router.director;
  const stop = performance.now() + seconds * 1000;
  const last = Math.min(run.bodies.length, run.next + maxRequests);
  let done = 0;
  const t0 = performance.now();
  const lane = async (): Promise<void> => {
    while (performance.now() < stop && run.next < last) {
      const seq = run.next++;
      const outcome = await director.route({ requestId: `${run.fleet}:${seq}`, path: PATH, headers: { 'content-type': 'application/json' }, body: run.bodies[seq]! });
      if (!outcome.ok) {
        // A rejection is not a decision (and comes back at once): counted apart.
        run.errors++;
        continue;
      }
      done++;
      run.open.set(seq, outcome.routed);
      fleet.post({ type: 'routed', fleet: run.fleet, seq, pod: run.podOfPort.get(outcome.routed.endpoints[0]!.port)!, outputTokens: run.outputTokens[seq]! });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  return { perSec: done / ((performance.now() - t0) / 1000), decisions: done };
}

function stageRow(arm: string, rate: number, samples: readonly Sample[]): StageRow {
  const fields: (keyof DecisionTimings)[] = ['parse', 'tokenizerCall', 'template', 'encode', 'hash', 'lookup', 'prefixScore', 'producers', 'filters', 'scorers', 'pick', 'hooks'];
  const stages: StageRow['stages'] = {};
  const add = (name: string, values: number[]): void => {
    const s = sortedOf(values);
    stages[name] = { meanMs: values.reduce((a, b) => a + b, 0) / Math.max(1, values.length), p99Ms: quantile(s, 0.99) };
  };
  for (const f of fields) add(f, samples.map((s) => s.timings[f]));
  // What the tokenizer call cost beyond its template and encode: the thread hop and queueing.
  add('tokenizerWait', samples.map((s) => Math.max(0, s.timings.tokenizerCall - s.timings.template - s.timings.encode)));
  // What no stage accounts for: waiting for the event loop between stages (ingestion, timers, other decisions).
  add(
    'unaccounted',
    samples.map((s) => Math.max(0, s.ms - s.timings.parse - s.timings.producers - s.timings.filters - s.timings.scorers - s.timings.pick - s.timings.hooks)),
  );
  add('total', samples.map((s) => s.ms));
  return { arm, ratePerSec: rate, stages };
}

export async function runDecisionBenchmark(options: DecisionBenchmarkOptions = {}): Promise<DecisionBenchmarkSummary | StageInstructions[]> {
  const quick = options.quick === true;
  const log = options.json ? (..._args: unknown[]) => undefined : (...args: unknown[]) => console.log(...args);
  if (options.instructionsOnly) return instructionProfile(quick, options.json === true, log);
  const loadBefore = loadavg();
  const tok = await LocalTokenizer.bundled(MODEL);
  const spec = decisionWorkloadSpec(charsFor(tok, 4000) / 4000);
  const slice = quick ? 3 : 5;
  const rounds = (quick ? 2 : 4) * (process.env['KVIX_DECISION_ONLY'] === 'latency' ? 3 : 1);
  // KVIX_DECISION_ONLY=saturation: warm-up and the scaling phase alone (for profiling the saturated path).
  const saturationOnly = process.env['KVIX_DECISION_ONLY'] === 'saturation';
  // KVIX_DECISION_ONLY=latency: the default precise arm at 40 req/s alone (three times the rounds), for
  // profiling the decision in place; KVIX_DECISION_CPU_PROFILE=<file> records that phase's CPU profile.
  const latencyOnly = process.env['KVIX_DECISION_ONLY'] === 'latency';
  const rates = options.profileOnly || saturationOnly ? [] : latencyOnly ? [40] : [40, 200];
  const ladder = options.profileOnly || saturationOnly || latencyOnly ? [] : quick ? [2000] : [1000, 2000, 3000];
  const ladderSeconds = quick ? 2 : 3;
  const warmup = { rate: 100, seconds: quick ? 4 : 8 };
  const profile = (n: string): Arm => ARMS.find((a) => a.name === n)!;
  // The arms as deployed (default tokenizer threads: none on this many cores, see defaultWorkers),
  // then the precise profile with 1 and 2 tokenizer threads, for the scaling phase and beside it.
  const defaults = defaultWorkers(availableParallelism());
  const arms: ArmDef[] = options.profileOnly || latencyOnly
    ? [{ label: 'precise', arm: profile('precise'), workers: defaults }]
    : [
        { label: 'precise', arm: profile('precise'), workers: defaults },
        { label: 'approximate', arm: profile('approximate'), workers: defaults },
        { label: 'round-robin', arm: profile('round-robin'), workers: defaults },
        ...(options.noScaling ? [] : [1, 2].filter((n) => n !== defaults).map((n) => ({ label: `precise, ${n} thread${n > 1 ? 's' : ''}`, arm: profile('precise'), workers: n }))),
      ];
  const scaling = { rounds: 2, seconds: quick ? 1.5 : 3, concurrency: 8, maxRequests: quick ? 3000 : 6000 };
  // Requests each arm may need (the precise arm also runs the throughput ladder), with headroom.
  const perArm = Math.ceil(1.3 * (warmup.rate * warmup.seconds + rates.reduce((a, r) => a + r * slice * rounds, 0)));
  // The isolated stage profile takes 400 more, unseen ones; the scaling phase maxRequests per round.
  const needed = perArm + Math.ceil(1.3 * ladder.reduce((a, r) => a + r * ladderSeconds, 0)) + 500 + (options.profileOnly ? 0 : scaling.rounds * scaling.maxRequests);

  const ports = await freePorts(arms.length * PODS * 2);
  const fleetPods = arms.map((_, a) => Array.from({ length: PODS }, (_, i) => ({ servingPort: ports[(a * PODS + i) * 2]!, eventPort: ports[(a * PODS + i) * 2 + 1]! })));
  log(`decision: ${PODS} synthetic pods per arm (KV events from the decisions themselves), llm-d-shaped chat; preparing ${needed} requests…`);
  const fleet = new FleetClient({
    fleets: fleetPods.map((pods) => ({ servingPorts: pods.map((p) => p.servingPort), eventPorts: pods.map((p) => p.eventPort) })),
    workload: spec,
    requests: needed,
    blockSize: 16,
    capacityBlocks: 2048,
    model: { tickMs: 10, overheadMs: 15, prefillTokensPerMs: 20, decodeMsPerToken: 15 },
  });
  const ready = (await fleet.next()) as Extract<FromFleet, { type: 'ready' }>;
  log(`  prompts average ${ready.meanPromptTokens.toFixed(0)} tokens`);

  // The request bodies, built before any clock starts.
  const workload = new Workload(spec);
  const bodies: Buffer[] = [];
  const outputTokens: number[] = [];
  const messagesOf: { role: string; content: string }[][] = [];
  for (let i = 0; i < needed; i++) {
    const r = workload.next();
    bodies.push(Buffer.from(JSON.stringify({ model: MODEL, messages: r.messages, max_tokens: r.maxTokens, stream: true, stream_options: { include_usage: true } })));
    outputTokens.push(r.maxTokens);
    messagesOf.push(r.messages);
  }

  const runs: ArmRun[] = [];
  const byFleet = new Map<number, ArmRun>();
  const observer = (id: string, seconds: number, timings: DecisionTimings): void => {
    const colon = id.indexOf(':');
    byFleet.get(Number(id.slice(0, colon)))?.samples?.push({ ms: seconds * 1000, timings: { ...timings } });
  };
  fleet.onFinished = (f, seq) => {
    const run = byFleet.get(f);
    const routed = run?.open.get(seq);
    if (routed) {
      run!.open.delete(seq);
      routed.finish({ status: 200 });
    }
  };
  const summary: DecisionBenchmarkSummary = {
    preciseP50Ms: Number.NaN,
    preciseP99Ms: Number.NaN,
    approximateP50Ms: Number.NaN,
    approximateP99Ms: Number.NaN,
    roundRobinP50Ms: Number.NaN,
    roundRobinP99Ms: Number.NaN,
    tokenizerThreads: defaults,
    preciseThreadP50Ms: Number.NaN,
    preciseThreadP99Ms: Number.NaN,
    decisionsPerSec: 0,
    ratePerSec: rates[0]!,
    loadAverage: loadBefore,
    phases: [],
    stages: [],
    isolated: {},
    throughput: [],
    scaling: [],
    ingest: { batchesPerSec: 0, blocksStoredPerSec: 0, blocksRemovedPerSec: 0 },
  };
  try {
    for (const [i, def] of arms.entries()) {
      const epp = await startEpp(def.arm, def.workers, fleetPods[i]!, observer);
      const podOfPort = new Map(fleetPods[i]!.map((p, k) => [p.servingPort, k]));
      const run: ArmRun = { arm: def.arm, label: def.label, workers: def.workers, scalingOnly: def.scalingOnly === true, fleet: i, epp, bodies, outputTokens, next: 0, samples: null, errors: 0, errorCodes: new Map(), open: new Map(), podOfPort };
      runs.push(run);
      byFleet.set(i, run);
      epp.router.registry.stop();
    }
    // Warm-up: caches, the JIT, the index; untimed.
    for (const run of runs) await drive(run, fleet, warmup.rate, warmup.seconds);
    // Every arm takes its turns, the precise variants with 0 and 2 tokenizer threads too.
    const latencyRuns = runs;
    let ingestSeconds = 0;
    const c0 = await fleet.counters();
    const t0 = performance.now();
    const cpuProfile = latencyOnly ? await startCpuProfile(process.env['KVIX_DECISION_CPU_PROFILE']) : null;
    for (const rate of rates) {
      // Arms take turns in slices, so a change in the machine's load falls on all of them alike.
      const late = new Map<string, number>();
      for (const run of latencyRuns) run.samples = [];
      const elu0 = perf.eventLoopUtilization();
      const delay = monitorEventLoopDelay({ resolution: 1 });
      delay.enable();
      for (let r = 0; r < rounds; r++) {
        for (const run of latencyRuns) late.set(run.label, Math.max(late.get(run.label) ?? 0, await drive(run, fleet, rate, slice)));
      }
      delay.disable();
      const elu = perf.eventLoopUtilization(elu0);
      for (const run of latencyRuns) {
        const ms = sortedOf(run.samples!.map((s) => s.ms));
        summary.phases.push({
          arm: run.label,
          ratePerSec: rate,
          decisions: ms.length,
          errors: run.errors,
          errorCodes: Object.fromEntries(run.errorCodes),
          p50Ms: quantile(ms, 0.5),
          p99Ms: quantile(ms, 0.99),
          maxMs: ms.at(-1) ?? Number.NaN,
          eventLoopUtilization: elu.utilization,
          eventLoopDelayP99Ms: delay.percentile(99) / 1e6,
          lateMs: late.get(run.label) ?? 0,
        });
        summary.stages.push(stageRow(run.label, rate, run.samples!));
        log(`  ${run.label.padEnd(20)} ${String(rate).padStart(4)}/s: p50 ${quantile(ms, 0.5).toFixed(3)} ms, p99 ${quantile(ms, 0.99).toFixed(3)} ms (${ms.length} decisions, ${run.errors} errors${run.errors > 0 ? ` ${JSON.stringify(Object.fromEntries(run.errorCodes))}` : ''})`);
        run.samples = null;
        run.errors = 0;
        run.errorCodes.clear();
      }
    }
    ingestSeconds = (performance.now() - t0) / 1000;
    await cpuProfile?.();
    const c1 = await fleet.counters();
    summary.ingest = {
      batchesPerSec: (c1.batches - c0.batches) / ingestSeconds,
      blocksStoredPerSec: (c1.blocksStored - c0.blocksStored) / ingestSeconds,
      blocksRemovedPerSec: (c1.blocksRemoved - c0.blocksRemoved) / ingestSeconds,
    };

    // Throughput: precise decisions at rising open-loop rates, until p99 passes the bound.
    const precise = runs[0]!;
    for (const rate of ladder) {
      precise.samples = [];
      const started = performance.now();
      await drive(precise, fleet, rate, ladderSeconds);
      const seconds = (performance.now() - started) / 1000;
      const ms = sortedOf(precise.samples.map((s) => s.ms));
      const p99 = quantile(ms, 0.99);
      const step = { ratePerSec: rate, achievedPerSec: ms.length / seconds, p50Ms: quantile(ms, 0.5), p99Ms: p99, pass: p99 <= THROUGHPUT_P99_MS && ms.length / seconds >= 0.9 * rate };
      summary.throughput.push(step);
      log(`  precise ladder ${rate}/s: achieved ${step.achievedPerSec.toFixed(0)}/s, p50 ${step.p50Ms.toFixed(3)} ms, p99 ${p99.toFixed(3)} ms ${step.pass ? 'ok' : 'over'}`);
      precise.samples = null;
      if (step.pass) summary.decisionsPerSec = Math.max(summary.decisionsPerSec, step.achievedPerSec);
      else break;
      // Let the in-flight requests of the step finish before the next one.
      await new Promise((r) => setTimeout(r, 1500));
    }

    // Scaling: the precise profile saturated (closed loop) with 0, 1 and 2 tokenizer threads, in turns.
    const variants = runs.filter((r) => r.label.startsWith('precise'));
    if (variants.length > 1) {
      await new Promise((r) => setTimeout(r, 1500));
      const got = new Map<string, { perSec: number[]; ms: number[]; errors: number; cpuMs: number; mainMs: number; decisions: number }>();
      for (let r = 0; r < scaling.rounds; r++) {
        for (let v = 0; v < variants.length; v++) {
          const run = variants[(v + r) % variants.length]!;
          run.samples = [];
          run.errors = 0;
          // CPU of the whole process minus the synthetic pods' thread: what the EPP spent.
          const before = { proc: processCpuMs(), main: threadCpuMs(), fleet: (await fleet.counters()).cpuMs };
          const { perSec, decisions } = await saturate(run, fleet, scaling.concurrency, scaling.seconds, scaling.maxRequests);
          const after = { proc: processCpuMs(), main: threadCpuMs(), fleet: (await fleet.counters()).cpuMs };
          const entry = got.get(run.label) ?? { perSec: [], ms: [], errors: 0, cpuMs: 0, mainMs: 0, decisions: 0 };
          entry.perSec.push(perSec);
          entry.errors += run.errors;
          entry.cpuMs += after.proc - before.proc - (after.fleet - before.fleet);
          entry.mainMs += after.main - before.main;
          entry.decisions += decisions;
          entry.ms.push(...run.samples.map((x) => x.ms));
          got.set(run.label, entry);
          run.samples = null;
          await new Promise((res) => setTimeout(res, 500));
        }
      }
      for (const run of variants) {
        const g = got.get(run.label)!;
        const ms = sortedOf(g.ms);
        const cpuPerDecision = g.cpuMs / Math.max(1, g.decisions);
        const mainPerDecision = g.mainMs / Math.max(1, g.decisions);
        summary.scaling.push({
          variant: run.label,
          tokenizerThreads: run.workers,
          decisionsPerSec: sortedOf(g.perSec),
          p50Ms: quantile(ms, 0.5),
          p99Ms: quantile(ms, 0.99),
          errors: g.errors,
          cpuMsPerDecision: cpuPerDecision,
          eventLoopCpuMsPerDecision: mainPerDecision,
          // What the work itself allows on idle cores: the event loop's share is serial; the rest spreads over the threads.
          boundPerSec: { oneCore: 1000 / cpuPerDecision, twoCores: Math.min(1000 / mainPerDecision, 2000 / cpuPerDecision) },
        });
        log(`  ${run.label.padEnd(20)} saturated (${scaling.concurrency} in flight): ${g.perSec.map((x) => x.toFixed(0)).join(' / ')} decisions/s, p50 ${quantile(ms, 0.5).toFixed(3)} ms, p99 ${quantile(ms, 0.99).toFixed(3)} ms`);
      }
    }

    if (!saturationOnly && !latencyOnly) summary.isolated = await isolatedStages(tok, precise, messagesOf, bodies);
  } finally {
    for (const run of runs) for (const routed of run.open.values()) routed.finish({ status: 200 });
    await Promise.allSettled(runs.map((r) => r.epp.stop()));
    await fleet.stop();
  }
  const at = (arm: string): PhaseResult | undefined => summary.phases.find((p) => p.arm === arm && p.ratePerSec === rates[0]);
  summary.preciseThreadP50Ms = at('precise, 1 thread')?.p50Ms ?? Number.NaN;
  summary.preciseThreadP99Ms = at('precise, 1 thread')?.p99Ms ?? Number.NaN;
  summary.tokenizerThreads = defaults;
  summary.preciseP50Ms = at('precise')?.p50Ms ?? Number.NaN;
  summary.preciseP99Ms = at('precise')?.p99Ms ?? Number.NaN;
  summary.approximateP50Ms = at('approximate')?.p50Ms ?? Number.NaN;
  summary.approximateP99Ms = at('approximate')?.p99Ms ?? Number.NaN;
  summary.roundRobinP50Ms = at('round-robin')?.p50Ms ?? Number.NaN;
  summary.roundRobinP99Ms = at('round-robin')?.p99Ms ?? Number.NaN;
  summary.loadAverage = [...loadBefore, ...loadavg()];
  if (options.json) {
    process.stdout.write(`${JSON.stringify(summary)}\n`);
  } else {
    report(summary);
    writeResult(latencyOnly ? 'decision-latency' : quick ? 'decision-quick' : 'decision', { quick, ...summary });
  }
  return summary;
}

/** Starts this thread's CPU profiler (when `file` is set); the returned function writes the profile there. */
async function startCpuProfile(file: string | undefined): Promise<(() => Promise<void>) | null> {
  if (file === undefined || file === '') return null;
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object): Promise<unknown> =>
    new Promise((resolve, reject) => session.post(method, params ?? {}, (err, result) => (err ? reject(err) : resolve(result))));
  await post('Profiler.enable');
  await post('Profiler.setSamplingInterval', { interval: 100 });
  await post('Profiler.start');
  return async () => {
    const { profile } = (await post('Profiler.stop')) as { profile: unknown };
    session.disconnect();
    await writeFile(file, JSON.stringify(profile));
  };
}

/**
 * Each stage of a precise decision alone on this thread, stage by stage over the same requests
 * (new turns of conversations the EPP has seen, against its live index): what each costs without
 * queueing or thread hops. Thread CPU time per request is the figure to compare on a loaded
 * machine (it does not count time the thread waited for a core); wall p50/p99 are given beside it.
 * The tokenizer here has seen the same earlier turns as the EPP's tokenizer thread.
 */
async function isolatedStages(tok: LocalTokenizer, run: ArmRun, messagesOf: { role: string; content: string }[][], bodies: Buffer[]): Promise<Record<string, IsolatedStage>> {
  const from = run.next;
  const to = Math.min(from + 400, messagesOf.length);
  const stack = run.epp.stack!;
  // The tokenizer thread's state: the same earlier turns tokenized, and their keys remembered.
  const prefixKeys = new PrefixKeyCache();
  for (let i = Math.max(0, from - 1500); i < from; i++) {
    const trace: PieceTrace = { fingerprints: [], ends: [] };
    prefixKeys.keys(stack.hasher, MODEL, null, tok.encodeChatIds(messagesOf[i]!, undefined, trace), trace);
  }
  const scorer = run.epp.prefixScorer!;
  const weights = tierWeights({});
  const candidates = run.epp.router.registry.candidates().map((c) => c.endpoint.id);
  const n = to - from;
  const texts: string[] = new Array(n);
  const ids: Uint32Array[] = new Array(n);
  const traces: PieceTrace[] = Array.from({ length: n }, () => ({ fingerprints: [], ends: [] }));
  const keys: BigUint64Array[] = new Array(n);
  const lookups: Awaited<ReturnType<typeof stack.index.lookup>>[] = new Array(n);
  const out: Record<string, IsolatedStage> = {};
  const stage = async (name: string, work: (k: number) => unknown): Promise<void> => {
    const wall: number[] = [];
    const cpu0 = threadCpuMs();
    for (let k = 0; k < n; k++) {
      const t0 = performance.now();
      const r = work(k);
      if (r instanceof Promise) await r;
      wall.push(performance.now() - t0);
    }
    const s = sortedOf(wall);
    out[name] = { cpuMeanMs: (threadCpuMs() - cpu0) / n, p50Ms: quantile(s, 0.5), p99Ms: quantile(s, 0.99) };
  };
  await stage('parse', (k) => parseOpenAiBody(PATH, bodies[from + k]!));
  await stage('copy to thread', (k) => structuredClone({ kind: 'chat', messages: messagesOf[from + k]! }));
  await stage('template', (k) => (texts[k] = tok.renderChat(messagesOf[from + k]!)));
  await stage('encode', (k) => (ids[k] = tok.encodeIds(texts[k]!, { addSpecialTokens: false }, traces[k])));
  await stage('hash, from scratch', (k) => (keys[k] = stack.hasher.keys(ids[k]!, MODEL)));
  await stage('hash, incremental', (k) => prefixKeys.keys(stack.hasher, MODEL, null, ids[k]!, traces[k]!));
  await stage('lookup', async (k) => (lookups[k] = await stack.index.lookup(keys[k]!, { pods: candidates })));
  // The alternative to the index (and ingestion) on the request event loop: the index on its own
  // thread, asked by message. Loaded with a snapshot of the EPP's index; same lookups.
  const backend = stack.backend;
  if (backend instanceof InMemoryIndex) {
    const thread = new Worker(new URL('./index-thread.js', import.meta.url));
    const replies = new Map<number, () => void>();
    thread.on('message', (m: FromIndexThread) => {
      if (m.type === 'lookup') replies.get(m.id)?.();
      else replies.get(-1)?.();
    });
    await new Promise<void>((resolve) => {
      replies.set(-1, resolve);
      thread.postMessage({ type: 'load', snapshot: backend.exportSnapshot() } satisfies ToIndexThread);
    });
    // Its first lookups compile its code; untimed.
    for (let k = 0; k < Math.min(50, n); k++) await new Promise<void>((resolve) => { replies.set(k, resolve); thread.postMessage({ type: 'lookup', id: k, keys: keys[k]!, pods: candidates } satisfies ToIndexThread); });
    await stage('lookup, index thread', (k) => new Promise<void>((resolve) => {
      replies.set(k, resolve);
      thread.postMessage({ type: 'lookup', id: k, keys: keys[k]!, pods: candidates } satisfies ToIndexThread);
    }));
    await thread.terminate();
  }
  const held: ReturnType<typeof scoreLookup>[] = new Array(n);
  await stage('prefix score', (k) => (held[k] = scoreLookup(lookups[k]!, keys[k]!.length, weights, candidates)));
  await stage('record decision', (k) => scorer.recordDecision({ model: MODEL, prompt: { kind: 'tokens', tokenIds: ids[k]! }, pod: held[k]![0]?.pod ?? candidates[0]!, requestKeys: keys[k]!, held: held[k]! }));
  return out;
}

async function instructionProfile(quick: boolean, json: boolean, log: (line: string) => void): Promise<StageInstructions[]> {
  const warm = quick ? 400 : 1500;
  const measured = quick ? 60 : 200;
  log(`decision --instructions: the precise stages under callgrind, ${warm} earlier turns warmed, ${measured} new turns counted (after ${measured} uncounted)`);
  const loadBefore = loadavg();
  const counts = await countStageInstructions({ warm, measured, log });
  const byName = new Map(counts.map((c) => [c.stage, c.perRequest]));
  if (json) {
    process.stdout.write(`${JSON.stringify({ warm, measured, stages: counts })}\n`);
    return counts;
  }
  const mi = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '–' : `${(v / 1e6).toFixed(3)} M`);
  printTable(
    'precise decision stages: instructions per request (callgrind Ir; repeatable under load), with the baseline each cut replaced',
    ['stage', 'instructions', 'baseline', 'ratio'],
    counts
      .filter((c) => c.stage !== 'encode, library alone' && c.stage !== 'hash, from scratch')
      .map((c) => {
        const base = c.stage === 'encode' ? byName.get('encode, library alone') : c.stage === 'hash, incremental' ? byName.get('hash, from scratch') : undefined;
        return [c.stage, mi(c.perRequest), base === undefined ? '' : `${mi(base)} (${c.stage === 'encode' ? 'the library alone' : 'from scratch'})`, base === undefined ? '' : `${(base / c.perRequest).toFixed(1)}×`];
      }),
  );
  writeResult(quick ? 'decision-instructions-quick' : 'decision-instructions', { warm, measured, stages: counts, loadAverage: [...loadBefore, ...loadavg()] });
  return counts;
}

function processCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function threadCpuMs(): number {
  const u = process.threadCpuUsage();
  return (u.user + u.system) / 1000;
}

function report(s: DecisionBenchmarkSummary): void {
  const f = (v: number): string => (Number.isFinite(v) ? v.toFixed(3) : '–');
  printTable(
    'routing decision latency (director.route: parse → pick → hooks, in process; arms take turns in the same run), ms',
    ['arm', 'rate/s', 'p50', 'p99', 'max', 'decisions', 'errors', 'loop busy', 'loop delay p99'],
    s.phases.map((p) => [p.arm, p.ratePerSec, f(p.p50Ms), f(p.p99Ms), f(p.maxMs), p.decisions, p.errors, `${(p.eventLoopUtilization * 100).toFixed(0)}%`, f(p.eventLoopDelayP99Ms)]),
  );
  const names = ['parse', 'tokenizerWait', 'template', 'encode', 'hash', 'lookup', 'prefixScore', 'filters', 'scorers', 'pick', 'hooks', 'unaccounted', 'total'];
  printTable(
    'precise decision by stage: mean / p99 ms (template and encode on the tokenizer thread; tokenizerWait = the call minus both)',
    ['arm, rate', ...names],
    s.stages.filter((r) => r.arm.startsWith('precise')).map((r) => [`${r.arm} ${r.ratePerSec}/s`, ...names.map((n) => `${f(r.stages[n]!.meanMs)} / ${f(r.stages[n]!.p99Ms)}`)]),
  );
  printTable(
    'the precise stages alone on one thread, stage by stage (new turns of known conversations, the live index): CPU ms per request, wall p50 / p99',
    ['stage', 'CPU', 'wall p50', 'wall p99'],
    Object.entries(s.isolated).map(([k, v]) => [k, f(v.cpuMeanMs), f(v.p50Ms), f(v.p99Ms)]),
  );
  printTable(
    `precise decisions/s: open-loop rates, passing while p99 ≤ ${THROUGHPUT_P99_MS} ms`,
    ['rate/s', 'achieved/s', 'p50', 'p99', ''],
    s.throughput.map((t) => [t.ratePerSec, t.achievedPerSec.toFixed(0), f(t.p50Ms), f(t.p99Ms), t.pass ? 'ok' : 'over']),
  );
  if (s.scaling.length > 0) {
    printTable(
      'precise decisions/s saturated (8 in flight, closed loop; rounds in turns), by tokenizer threads (the default arm: ' + String(s.tokenizerThreads) + '; 0 puts the whole decision on the event loop); CPU per decision measured while saturated, and the decisions/s it allows on idle cores (2 cores: the event loop\'s share is serial)',
      ['variant', 'threads', 'decisions/s per round', 'p50', 'p99', 'rejected', 'CPU/decision', 'event loop CPU/decision', 'bound: 1 core', 'bound: 2 cores'],
      s.scaling.map((v) => [v.variant, v.tokenizerThreads, v.decisionsPerSec.map((x) => x.toFixed(0)).join(' / '), f(v.p50Ms), f(v.p99Ms), v.errors, f(v.cpuMsPerDecision), f(v.eventLoopCpuMsPerDecision), v.boundPerSec.oneCore.toFixed(0), v.boundPerSec.twoCores.toFixed(0)]),
    );
  }
  console.log(
    `ingestion while measuring: ${s.ingest.batchesPerSec.toFixed(0)} batches/s, ${s.ingest.blocksStoredPerSec.toFixed(0)} blocks stored/s, ${s.ingest.blocksRemovedPerSec.toFixed(0)} removed/s (all arms' pods)`,
  );
  console.log(
    `goals at ${s.ratePerSec}/s: precise p50 ${f(s.preciseP50Ms)} ms (≤ 1: ${s.preciseP50Ms <= 1 ? 'met' : 'NOT met'}), p99 ${f(s.preciseP99Ms)} ms (≤ 3: ${s.preciseP99Ms <= 3 ? 'met' : 'NOT met'}); ` +
      `approximate ${f(s.approximateP50Ms)} / ${f(s.approximateP99Ms)} ms; precise decisions/s with p99 ≤ ${THROUGHPUT_P99_MS} ms: ${s.decisionsPerSec.toFixed(0)} (≥ 2000: ${s.decisionsPerSec >= 2000 ? 'met' : 'NOT met'}); load average ${s.loadAverage.map((l) => l.toFixed(1)).join(' ')}`,
  );
}
