import { InMemoryIndex, type PodEntry } from '@kvix/kv-index';
import { Replication, ReplicationSettingsSchema, type ReplicationSettingsInput } from '@kvix/replication';
import { startNats, type PrivateServer } from '@kvix/test-support';
import { Worker } from 'node:worker_threads';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { writeResult } from '../harness.js';
import type { FollowerReport } from './follower-worker.js';

const logger = pino({ level: 'warn' }, pino.destination(2));
const PODS = 32;
const BLOCKS_PER_STORE = 16;

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

class FollowerProcess {
  private readonly worker: Worker;
  private readonly waiters: ((msg: { type: string; report?: FollowerReport }) => void)[] = [];
  constructor(settings: ReplicationSettingsInput, role: 'follow' | 'speculation' = 'follow') {
    this.worker = new Worker(new URL('./follower-worker.js', import.meta.url), { workerData: { settings, role } });
    this.worker.on('message', (m: { type: string; report?: FollowerReport }) => this.waiters.shift()?.(m));
    this.worker.on('error', (err) => {
      throw err;
    });
  }
  next(): Promise<{ type: string; report?: FollowerReport }> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }
  async report(): Promise<FollowerReport> {
    const answer = this.next();
    this.worker.postMessage({ type: 'report' });
    return (await answer).report!;
  }
  async stop(): Promise<void> {
    const answer = this.next();
    this.worker.postMessage({ type: 'stop' });
    await answer;
    await this.worker.terminate();
  }
}

let seq = 0;
function settingsFor(nats: PrivateServer, name: string, extra: ReplicationSettingsInput = {}): ReplicationSettingsInput {
  return { natsUrl: nats.url, stream: `BENCH_${name}`, snapshotBucket: `bench-${name}`, subjectPrefix: `bench.${name}`, snapshotIntervalMs: 3_600_000, streamMaxAgeMs: 7_200_000, ...extra };
}

const keyState = { next: 1n };
function freshKeys(n: number): BigUint64Array {
  const out = new BigUint64Array(n);
  for (let i = 0; i < n; i++) out[i] = BigInt.asUintN(64, keyState.next++ * 0x9e3779b97f4a7c15n);
  return out;
}
const podEntry = (p: number): PodEntry => ({ pod: `10.0.${p >> 8}.${p & 255}:8000`, tier: 'gpu', speculative: false });

/** Replication lag at a target rate of stored blocks per second, stores and removals mixed as an engine makes them. */
async function lagRun(nats: PrivateServer, blocksPerSec: number, seconds: number): Promise<Record<string, number>> {
  const s = settingsFor(nats, `lag${++seq}`);
  const pub = await Replication.start(ReplicationSettingsSchema.parse({ ...s, index: 'publish' }), { registry: new Registry(), logger });
  const backend = new InMemoryIndex({ sweepIntervalMs: 0, maxEntries: 50_000_000 });
  const index = pub.publishTo(backend);
  await pub.startPublishing();
  const follower = new FollowerProcess({ ...s, index: 'follow', replicaId: 'follower' });
  await follower.next();
  const live: { keys: BigUint64Array; pod: number }[] = [];
  let blocks = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  // Every 5 ms, the stores (and as many removals, once the fleet is "full") that are due by then.
  while (performance.now() < end) {
    const due = Math.floor(((performance.now() - start) / 1000) * blocksPerSec);
    while (blocks + BLOCKS_PER_STORE <= due) {
      const pod = (blocks / BLOCKS_PER_STORE) % PODS;
      const keys = freshKeys(BLOCKS_PER_STORE);
      await index.add(keys, keys, [podEntry(pod)]);
      live.push({ keys, pod });
      if (live.length > 20_000) {
        const old = live.shift()!;
        for (const k of old.keys) await index.evict(k, 'engine', [podEntry(old.pod)]);
      }
      blocks += BLOCKS_PER_STORE;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  const sendSeconds = (performance.now() - start) / 1000;
  await pub.published();
  const lastSeq = pub.status().publisher!.lastAckedSeq;
  let report: FollowerReport;
  const lag: number[] = [];
  let messages = 0;
  for (;;) {
    report = await follower.report();
    lag.push(...report.lagMs);
    messages += report.messages;
    if (report.appliedSeq >= lastSeq) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const localEntries = (await backend.stats()).entries;
  await follower.stop();
  await pub.close();
  await backend.close();
  lag.sort((a, b) => a - b);
  return { targetBlocksPerSec: blocksPerSec, blocksPerSec: blocks / sendSeconds, messages, lagP50Ms: quantile(lag, 0.5), lagP99Ms: quantile(lag, 0.99), lagMaxMs: lag[lag.length - 1]!, converged: report.entries === localEntries ? 1 : 0 };
}

/**
 * Routing decisions shared between two router replicas: A records a decision (speculative entries
 * for a 64-block prompt) at `perSec`, B (its own thread) applies it; the lag is A's add → B's add.
 */
async function speculationRun(nats: PrivateServer, perSec: number, seconds: number): Promise<Record<string, number>> {
  const s = settingsFor(nats, `spec${++seq}`);
  const a = await Replication.start(ReplicationSettingsSchema.parse({ ...s, replicaId: 'a' }), { registry: new Registry(), logger });
  const aIndex = new InMemoryIndex({ sweepIntervalMs: 0 });
  const scorerIndex = a.shareSpeculation(aIndex, aIndex);
  const b = new FollowerProcess({ ...s, replicaId: 'b' }, 'speculation');
  await b.next();
  await new Promise((r) => setTimeout(r, 200)); // B's subscription reaches the server
  const start = performance.now();
  let sent = 0;
  while (performance.now() - start < seconds * 1000) {
    const due = Math.floor(((performance.now() - start) / 1000) * perSec);
    for (; sent < due; sent++) {
      const keys = freshKeys(64);
      keys[0] = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000));
      await scorerIndex.add(null, keys, [{ pod: podEntry(sent % PODS).pod, tier: 'gpu', speculative: true }], { ttlMs: 2000 });
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  await new Promise((r) => setTimeout(r, 500));
  const report = await b.report();
  await b.stop();
  await a.close();
  await aIndex.close();
  const lag = report.lagMs.sort((x, y) => x - y);
  return { decisionsPerSec: perSec, sent, received: report.messages, lagP50Ms: quantile(lag, 0.5), lagP99Ms: quantile(lag, 0.99), lagMaxMs: lag[lag.length - 1] ?? Number.NaN };
}

/** A new replica's time to ready with `blocks` indexed blocks: from a snapshot, and (the baseline) from the stream alone. */
async function bootstrapRun(nats: PrivateServer, blocks: number): Promise<Record<string, number>> {
  const s = settingsFor(nats, `boot${++seq}`);
  const pub = await Replication.start(ReplicationSettingsSchema.parse({ ...s, index: 'publish' }), { registry: new Registry(), logger });
  const backend = new InMemoryIndex({ sweepIntervalMs: 0, maxEntries: 50_000_000 });
  const index = pub.publishTo(backend);
  await pub.startPublishing();
  // Published as an engine would announce them: 64-block stores with engine keys, spread over the pods.
  const t0 = performance.now();
  for (let b = 0; b < blocks; b += 64) {
    const keys = freshKeys(Math.min(64, blocks - b));
    await index.add(keys, keys, [podEntry((b / 64) % PODS)]);
  }
  await pub.published();
  const publishSeconds = (performance.now() - t0) / 1000;

  const replay = await timeToReady(s, blocks);
  const w0 = performance.now();
  await pub.writeSnapshot(true);
  const snapshotWriteMs = performance.now() - w0;
  const snapshotBytes = (await pub.metrics.snapshotBytes.get()).values[0]?.value ?? 0;
  const fromSnapshot = await timeToReady(s, blocks);
  await pub.close();
  await backend.close();
  return { blocks, publishSeconds, snapshotWriteMs, snapshotMiB: snapshotBytes / 2 ** 20, replayOnlyReadyMs: replay, snapshotReadyMs: fromSnapshot, replayBlocksPerSec: blocks / (replay / 1000) };
}

async function timeToReady(s: ReplicationSettingsInput, blocks: number): Promise<number> {
  const t0 = performance.now();
  const r = await Replication.start(ReplicationSettingsSchema.parse({ ...s, index: 'follow', replicaId: 'fresh' }), { registry: new Registry(), logger });
  const index = new InMemoryIndex({ sweepIntervalMs: 0, maxEntries: 50_000_000 });
  await r.follow(index);
  const ms = performance.now() - t0;
  const entries = (await index.stats()).entries;
  if (entries !== blocks) throw new Error(`bootstrapped replica holds ${entries} entries, expected ${blocks}`);
  await r.close();
  await index.close();
  return ms;
}

export async function runReplicationBenchmark({ quick }: { quick: boolean }): Promise<void> {
  console.log('\n== replication (NATS JetStream, one publisher, one follower on its own thread) ==');
  const nats = await startNats();
  try {
    const lag = [];
    for (const rate of quick ? [100_000] : [25_000, 100_000, 200_000]) {
      const r = await lagRun(nats, rate, quick ? 4 : 10);
      lag.push(r);
      console.log(
        `  lag at ${(rate / 1000).toFixed(0)} k blocks/s target (${(r.blocksPerSec! / 1000).toFixed(1)} k achieved, ${r.messages} messages): ` +
          `p50 ${r.lagP50Ms!.toFixed(2)} ms, p99 ${r.lagP99Ms!.toFixed(2)} ms, max ${r.lagMaxMs!.toFixed(1)} ms, converged ${r.converged === 1 ? 'yes' : 'NO'}`,
      );
    }
    const speculation = [];
    for (const rate of quick ? [500] : [200, 1000]) {
      const r = await speculationRun(nats, rate, quick ? 3 : 8);
      speculation.push(r);
      console.log(`  a routing decision reaching a peer replica at ${rate} decisions/s (64-block prompts): p50 ${r.lagP50Ms!.toFixed(2)} ms, p99 ${r.lagP99Ms!.toFixed(2)} ms, max ${r.lagMaxMs!.toFixed(1)} ms (${r.received}/${r.sent} received)`);
    }
    const blocks = quick ? 200_000 : 1_000_000;
    const boot = await bootstrapRun(nats, blocks);
    console.log(
      `  bootstrap with ${(blocks / 1e6).toFixed(1)} M blocks: from snapshot ${boot.snapshotReadyMs!.toFixed(0)} ms (snapshot ${boot.snapshotMiB!.toFixed(1)} MiB, written in ${boot.snapshotWriteMs!.toFixed(0)} ms), ` +
        `replaying the stream alone ${boot.replayOnlyReadyMs!.toFixed(0)} ms — a lower bound: this stream holds only these stores, ` +
        `while a real one holds every store and removal of its retention window (${((blocks / boot.replayOnlyReadyMs!) * 1000 / 1e6).toFixed(2)} M blocks/s replayed; an hour at 100 k blocks/s would take ${((360e6 / (blocks / boot.replayOnlyReadyMs!)) / 1000).toFixed(0)} s)`,
    );
    writeResult('replication', { quick, lag, speculation, bootstrap: boot });
  } finally {
    await nats.dispose();
  }
}
