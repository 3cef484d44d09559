import { Worker } from 'node:worker_threads';
import { RequestKeyHasher } from '@kvix/block-keys';
import { decodeEventBatch, type EventBatch } from '@kvix/kv-events';
import { EventApplier, InMemoryIndex, type ApplyResult, type EventSource } from '@kvix/kv-index';
import { IngestMetrics, Ingestor, parseIngestConfig } from '@kvix/kv-ingest';
import { freePorts } from '@kvix/test-support';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { printTable, si, writeResult } from '../harness.js';
import type { FromPublisher, PublisherWorkerData, ToPublisher } from './publisher-worker.js';
import { BENCH_MODEL, BLOCK_SIZE, blocksPerBatch, DEFAULT_SHAPE, nowSeconds, podPayloads } from './workload.js';

const PODS = 8;
const LADDER = [250_000, 500_000, 600_000, 700_000, 800_000, 900_000, 1_000_000, 1_250_000, 1_500_000, 2_000_000, 3_000_000];
/**
 * A step passes when nothing was lost, the consumer applied at least 97% of the rate while the
 * publishers ran, and it was at most this far behind when they stopped.
 */
const MAX_DRAIN_MS = 250;

/** The applier with a stopwatch: engine timestamp → applied, per batch, and blocks stored. */
class TimedApplier extends EventApplier {
  storedBlocks = 0;
  lags: number[] | null = null;

  override async apply(batch: EventBatch, source: EventSource): Promise<ApplyResult> {
    const result = await super.apply(batch, source);
    for (const ev of batch.events) if (ev.type === 'BlockStored') this.storedBlocks += ev.blockHashes.length;
    this.lags?.push((nowSeconds() - batch.ts) * 1000);
    return result;
  }
}

interface StepResult {
  target: number;
  sentRate: number;
  appliedRate: number;
  drainMs: number;
  loss: number;
  mainThreadBusy: number;
  pass: boolean;
  publisherLimited: boolean;
}

/** What decoding and applying alone sustain on this thread, without sockets or ordering. */
async function applierCeiling(seconds: number): Promise<number> {
  const hasher = new RequestKeyHasher({ blockSize: BLOCK_SIZE });
  const applier = new TimedApplier(new InMemoryIndex({ sweepIntervalMs: 0 }), { hasher });
  const payloads = Array.from({ length: PODS }, (_, pod) => podPayloads(pod, DEFAULT_SHAPE));
  const run = async (ms: number): Promise<number> => {
    const start = applier.storedBlocks;
    const t0 = performance.now();
    let i = 0;
    while (performance.now() - t0 < ms) {
      const pod = i % PODS;
      const ring = payloads[pod]!;
      await applier.apply(decodeEventBatch(ring[Math.floor(i / PODS) % ring.length]!), { pod: `127.0.0.1:${20_000 + pod}`, model: BENCH_MODEL });
      i++;
    }
    return ((applier.storedBlocks - start) * 1000) / (performance.now() - t0);
  };
  await run(1000);
  const rounds = [await run(seconds * 1000), await run(seconds * 1000), await run(seconds * 1000)].sort((a, b) => a - b);
  return rounds[1]!;
}

export async function runIngestBenchmark({ quick = false } = {}): Promise<void> {
  const stepSeconds = quick ? 1 : 3;
  const eventPorts = await freePorts(PODS);
  const servingPorts = Array.from({ length: PODS }, (_, i) => 20_000 + i);
  const shape = DEFAULT_SHAPE;

  const ceiling = await applierCeiling(quick ? 0.5 : 1);

  const registry = new Registry();
  const metrics = new IngestMetrics(registry);
  const index = new InMemoryIndex({});
  const applier = new TimedApplier(index, { hasher: new RequestKeyHasher({ blockSize: BLOCK_SIZE }), observer: metrics.applierObserver() });
  const config = parseIngestConfig({
    pods: servingPorts.map((port, i) => ({ name: `pod-${i}`, address: '127.0.0.1', port, eventPort: eventPorts[i]!, replayPort: null, model: BENCH_MODEL })),
    readinessTimeoutMs: 1000,
  });
  const ingestor = new Ingestor({ config, applier, metrics, logger: pino({ level: 'silent' }) });
  await ingestor.start();

  const worker = new Worker(new URL('./publisher-worker.js', import.meta.url), { workerData: { eventPorts, servingPorts, shape } satisfies PublisherWorkerData });
  const replies: ((m: FromPublisher) => void)[] = [];
  worker.on('message', (m: FromPublisher) => replies.shift()?.(m));
  const next = (): Promise<FromPublisher> => new Promise((resolve) => replies.push(resolve));
  await next(); // ready
  const publish = async (blocksPerSec: number, seconds: number): Promise<Extract<FromPublisher, { type: 'done' }>> => {
    const reply = next();
    worker.postMessage({ type: 'run', blocksPerSec, seconds } satisfies ToPublisher);
    return (await reply) as Extract<FromPublisher, { type: 'done' }>;
  };
  const podIds = servingPorts.map((p) => `127.0.0.1:${p}`);
  const lossSoFar = (): number => ingestor.podStates().reduce((a, p) => a + p.stream.gaps + p.stream.lost + p.stream.overflows, 0);
  const drained = async (lastSeq: string[], timeoutMs: number): Promise<number> => {
    const t0 = performance.now();
    for (;;) {
      const states = new Map(ingestor.podStates().map((p) => [p.id, p.stream]));
      if (podIds.every((id, i) => states.get(id)?.lastSeq === lastSeq[i] && states.get(id)?.queued === 0)) return performance.now() - t0;
      if (performance.now() - t0 > timeoutMs) return Number.POSITIVE_INFINITY;
      await new Promise((r) => setTimeout(r, 2));
    }
  };

  // Subscriptions propagate asynchronously (ZeroMQ's slow joiner): warm up until every pod's stream flows.
  for (let attempt = 0; ; attempt++) {
    const done = await publish(50_000, 0.3);
    if ((await drained(done.lastSeq, 2000)) !== Number.POSITIVE_INFINITY) break;
    if (attempt > 20) throw new Error('the consumer never received every publisher');
  }

  const steps: StepResult[] = [];
  let best = 0;
  for (const target of LADDER) {
    const loss0 = lossSoFar();
    const applied0 = applier.storedBlocks;
    const elu0 = performance.eventLoopUtilization();
    const done = await publish(target, stepSeconds);
    const appliedAtEnd = applier.storedBlocks;
    const drainMs = await drained(done.lastSeq, 10_000);
    const elu = performance.eventLoopUtilization(elu0);
    const loss = lossSoFar() - loss0;
    const sentRate = done.blocks / done.seconds;
    const step: StepResult = {
      target,
      sentRate,
      appliedRate: (appliedAtEnd - applied0) / done.seconds,
      drainMs,
      loss,
      mainThreadBusy: elu.utilization,
      pass: loss === 0 && drainMs <= MAX_DRAIN_MS && (appliedAtEnd - applied0) / done.seconds >= 0.97 * sentRate,
      publisherLimited: sentRate < 0.95 * target,
    };
    steps.push(step);
    if (!step.pass || step.publisherLimited) break;
    best = target;
  }

  const halfRate = best / 2;
  applier.lags = [];
  const halfDone = halfRate > 0 ? await publish(halfRate, quick ? 2 : 5) : null;
  if (halfDone) await drained(halfDone.lastSeq, 10_000);
  const lags = applier.lags.sort((a, b) => a - b);
  applier.lags = null;
  const pct = (q: number): number => lags[Math.min(lags.length - 1, Math.floor(q * lags.length))] ?? Number.NaN;

  worker.postMessage({ type: 'stop' } satisfies ToPublisher);
  await ingestor.stop();
  await index.close();
  await worker.terminate();

  printTable(
    `ingest — ${PODS} publishers (a worker thread) → ZeroMQ → ingestor + in-memory index (main thread); batches of ${blocksPerBatch(shape)} stored + ${blocksPerBatch(shape)} removed blocks of ${BLOCK_SIZE} tokens`,
    ['target blocks/s', 'sent/s', 'applied/s', 'drain ms', 'lost', 'main thread busy', 'result'],
    steps.map((s) => [si(s.target), si(s.sentRate), si(s.appliedRate), Number.isFinite(s.drainMs) ? s.drainMs.toFixed(0) : 'never', s.loss, `${(s.mainThreadBusy * 100).toFixed(0)}%`, s.publisherLimited ? 'publisher-limited' : s.pass ? 'ok' : s.loss > 0 ? 'lost' : 'behind']),
  );
  console.log(`zero-loss ingestion: ${si(best)} blocks/s (goal ≥ 500 k); decode + apply alone on one thread: ${si(ceiling)} blocks/s; ratio ${(best / ceiling).toFixed(2)}`);
  console.log(`lag at half rate (${si(halfRate)} blocks/s, ${lags.length} batches): p50 ${pct(0.5).toFixed(2)} ms, p99 ${pct(0.99).toFixed(2)} ms, max ${(lags[lags.length - 1] ?? Number.NaN).toFixed(2)} ms`);
  if (steps.at(-1)?.publisherLimited) console.log('the publishers could not send faster: the zero-loss figure is a lower bound');
  writeResult('ingest', {
    quick,
    pods: PODS,
    shape,
    stepSeconds,
    steps,
    zeroLossBlocksPerSec: best,
    applierCeilingBlocksPerSec: ceiling,
    ratioToCeiling: best / ceiling,
    lagAtHalfRate: { blocksPerSec: halfRate, batches: lags.length, p50Ms: pct(0.5), p99Ms: pct(0.99), maxMs: lags[lags.length - 1] ?? null },
  });
}
