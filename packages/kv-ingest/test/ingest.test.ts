import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RequestKeyHasher } from '@kvix/block-keys';
import { encodeEventBatch, encodeSeq } from '@kvix/kv-events';
import { EventApplier, InMemoryIndex, scoreLookup } from '@kvix/kv-index';
import { freePorts, waitFor } from '@kvix/test-support';
import type { SimConfigInput, SimPod } from '@kvix/vllm-sim';
import { startLocalPod } from '@kvix/vllm-sim/testing';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { stringify } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { Publisher } from 'zeromq';
import { IngestMetrics, Ingestor, parseIngestConfig, type DiscoverySource, type IngestConfigInput, type PodTarget } from '../src/index.js';

const MODEL = 'Qwen/Qwen3-0.6B';
const silent = pino({ level: 'silent' });

interface Sim {
  pod: SimPod;
  http: string;
  id: string;
  eventPort: number;
  replayPort: number;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startSims(n: number, overrides: SimConfigInput = {}): Promise<Sim[]> {
  const sims: Sim[] = [];
  for (let i = 0; i < n; i++) {
    const local = await startLocalPod({ timeScale: 100, numGpuBlocksOverride: 48, ...overrides });
    cleanups.push(() => local.pod.stop());
    sims.push({ pod: local.pod, http: local.url, id: local.id, eventPort: local.eventPort, replayPort: local.replayPort });
  }
  return sims;
}

function endpointsFile(sims: Sim[], extra: Record<string, unknown>[] = []): string {
  const file = join(mkdtempSync(join(tmpdir(), 'kvix-ingest-')), 'endpoints.yaml');
  writeEndpoints(file, sims, extra);
  return file;
}

/** Replaced by an atomic rename, as discovery expects. */
function writeEndpoints(file: string, sims: Sim[], extra: Record<string, unknown>[] = []): void {
  const entries = sims.map((s, i) => ({ name: `sim-${i}`, address: '127.0.0.1', port: Number(s.id.split(':')[1]), eventPort: s.eventPort, replayPort: s.replayPort, model: MODEL }));
  writeFileSync(`${file}.tmp`, stringify({ endpoints: [...entries, ...extra] }));
  renameSync(`${file}.tmp`, file);
}

/** A discovery source the test feeds snapshots to (a Kubernetes watcher would do the same). */
class ScriptedDiscovery implements DiscoverySource {
  readonly name = 'scripted';
  private onSnapshot: ((targets: readonly PodTarget[]) => void) | null = null;
  async start(onSnapshot: (targets: readonly PodTarget[]) => void): Promise<void> {
    this.onSnapshot = onSnapshot;
    onSnapshot([]);
  }
  async stop(): Promise<void> {}
  report(targets: readonly PodTarget[]): void {
    this.onSnapshot?.(targets);
  }
}

async function startIngestion(config: IngestConfigInput, discovery?: DiscoverySource[], logger = silent) {
  const index = new InMemoryIndex({ sweepIntervalMs: 0 });
  const hasher = new RequestKeyHasher({ blockSize: 16 });
  const registry = new Registry();
  const metrics = new IngestMetrics(registry);
  const applier = new EventApplier(index, { hasher, observer: metrics.applierObserver() });
  const ingestor = new Ingestor({
    config: parseIngestConfig({ replayIdleTimeoutMs: 1000, replayCooldownMs: 1000, readinessTimeoutMs: 5000, endpointsPollIntervalMs: 200, ...config }),
    applier,
    metrics,
    logger,
    ...(discovery ? { discovery } : {}),
  });
  await ingestor.start();
  cleanups.push(() => ingestor.stop());
  return { index, hasher, ingestor, registry };
}

const prompts = (count: number): number[][] =>
  Array.from({ length: count }, (_, i) => {
    const family = i % 4;
    const prefix = Array.from({ length: 64 + family * 16 }, (_, k) => 1000 + family * 997 + k * 13);
    const suffix = Array.from({ length: 16 + (i % 3) * 16 }, (_, k) => 20_000 + i * 101 + k);
    return [...prefix, ...suffix];
  });

async function complete(sim: Sim, tokens: number[], maxTokens = 20): Promise<void> {
  const res = await fetch(`${sim.http}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, prompt: tokens, max_tokens: maxTokens }) });
  expect(res.status).toBe(200);
  await res.arrayBuffer();
}

async function traffic(sims: Sim[], work: number[][]): Promise<void> {
  await Promise.all(work.map((tokens, i) => complete(sims[(i * 7) % sims.length]!, tokens)));
}

/** Waits until every pod's events up to what it published have been applied. */
async function caughtUp(sims: Sim[], ingestor: Ingestor): Promise<void> {
  await waitFor(async () => {
    for (const s of sims) {
      const state = (await (await fetch(`${s.http}/sim/state`)).json()) as { publisher: { nextSeq: string } };
      const stream = ingestor.podStates().find((p) => p.id === s.id)?.stream;
      if (!stream || stream.queued > 0 || stream.phase !== 'idle') return false;
      if (stream.lastSeq !== String(BigInt(state.publisher.nextSeq) - 1n)) return false;
    }
    return true;
  }, 15_000, 'ingestion to catch up');
}

/** The index's view of each prompt on each pod equals the pod's own. */
async function expectIndexMatchesPods(sims: Sim[], index: InMemoryIndex, hasher: RequestKeyHasher, work: number[][]): Promise<void> {
  for (const tokens of work) {
    const keys = hasher.keys(tokens, MODEL);
    const scores = scoreLookup(await index.lookup(keys, { earlyStop: false }), keys.length);
    for (const s of sims) {
      const view = (await (await fetch(`${s.http}/sim/prefix`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tokens }) })).json()) as { anyTierBlocks: number };
      const indexed = scores.find((x) => x.pod === s.id)?.matchedBlocks ?? 0;
      expect({ pod: s.id, blocks: indexed }).toEqual({ pod: s.id, blocks: view.anyTierBlocks });
    }
  }
}

async function fault(sim: Sim, body: Record<string, unknown>): Promise<void> {
  const res = await fetch(`${sim.http}/sim/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  expect(res.status).toBe(200);
}

describe('KV-event ingestion from simulated vLLM pods', () => {
  it('keeps the index equal to what the pods hold under steady traffic with evictions', async () => {
    const sims = await startSims(3);
    const { index, hasher, ingestor } = await startIngestion({ endpointsFile: endpointsFile(sims) });
    await ingestor.whenReady();
    const work = prompts(40);
    await traffic(sims, work);
    await caughtUp(sims, ingestor);
    await expectIndexMatchesPods(sims, index, hasher, work);
    const states = ingestor.podStates();
    expect(states.every((s) => s.connected)).toBe(true);
    expect((await index.stats()).entries).toBeGreaterThan(0);
  });

  it('recovers dropped batches by replay', async () => {
    const sims = await startSims(2);
    const { index, hasher, ingestor, registry } = await startIngestion({ endpointsFile: endpointsFile(sims) });
    await ingestor.whenReady();
    for (const s of sims) await fault(s, { dropEventsFraction: 0.5 });
    const work = prompts(30);
    await traffic(sims, work);
    // A gap shows with the next batch that gets through.
    for (const s of sims) await fault(s, { dropEventsFraction: 0 });
    await traffic(sims, [prompts(1)[0]!.map((t) => t + 7), prompts(1)[0]!.map((t) => t + 9)]);
    await caughtUp(sims, ingestor);
    await expectIndexMatchesPods(sims, index, hasher, work);
    const replays = (await registry.getSingleMetric('kvix_ingest_replays_total')!.get()).values.filter((v) => v.labels['reason'] === 'gap');
    expect(replays.reduce((a, v) => a + v.value, 0)).toBeGreaterThan(0);
  });

  it('recovers the batches lost at the end of a burst once the pod goes quiet', async () => {
    const sims = await startSims(1);
    const { index, hasher, ingestor, registry } = await startIngestion({ endpointsFile: endpointsFile(sims), tailCheckMs: 200 });
    await ingestor.whenReady();
    const work = prompts(4);
    await traffic(sims, work.slice(0, 2));
    await caughtUp(sims, ingestor);
    // The burst's last batches never reach the consumer, and the pod publishes nothing after them.
    await fault(sims[0]!, { dropEventsFraction: 1 });
    await traffic(sims, work.slice(2));
    await fault(sims[0]!, { dropEventsFraction: 0 });
    await caughtUp(sims, ingestor);
    await expectIndexMatchesPods(sims, index, hasher, work);
    const tail = (await registry.getSingleMetric('kvix_ingest_replays_total')!.get()).values.filter((v) => v.labels['reason'] === 'tail');
    expect(tail.reduce((a, v) => a + v.value, 0)).toBeGreaterThan(0);
  });

  it('recovers a burst whose every batch was lost, even after the pod\'s last tail check found nothing', async () => {
    const sims = await startSims(1);
    const { index, hasher, ingestor } = await startIngestion({ endpointsFile: endpointsFile(sims), tailCheckMs: 100 });
    await ingestor.whenReady();
    const work = prompts(4);
    await traffic(sims, work.slice(0, 2));
    await caughtUp(sims, ingestor);
    // The quiet pod's tail check runs (the pod serves a replay request) and finds nothing new.
    const served = async (): Promise<number> => ((await (await fetch(`${sims[0]!.http}/sim/state`)).json()) as { publisher: { replays: number } }).publisher.replays;
    const before = await served();
    await waitFor(async () => (await served()) > before, 10_000, 'the tail check');
    // Then a whole burst is lost: no batch of it reaches the consumer, and the pod goes quiet.
    await fault(sims[0]!, { dropEventsFraction: 1 });
    await traffic(sims, work.slice(2));
    await fault(sims[0]!, { dropEventsFraction: 0 });
    await caughtUp(sims, ingestor);
    await expectIndexMatchesPods(sims, index, hasher, work);
  });

  it('clears and rebuilds a pod whose engine restarted', async () => {
    const sims = await startSims(2);
    const { index, hasher, ingestor } = await startIngestion({ endpointsFile: endpointsFile(sims) });
    await ingestor.whenReady();
    const work = prompts(20);
    await traffic(sims, work);
    await caughtUp(sims, ingestor);
    // The engine loses its cache and its sequence starts over, without announcing anything.
    const stateOf = () => ingestor.podStates().find((p) => p.id === sims[0]!.id)!.stream;
    const replaysBefore = stateOf().replays;
    await fault(sims[0]!, { restartEngine: true });
    const after = prompts(6).map((p) => p.map((t) => t + 3));
    for (const tokens of after) await complete(sims[0]!, tokens);
    // The consumer handles it when it sees a lower seq (a reset) or on reconnecting (it checks the
    // engine's replay buffer; with equal seq ranges it cannot tell a restart, and rebuilds anyway).
    await waitFor(() => stateOf().resets === 1 || stateOf().replays > replaysBefore, 10_000, 'the restart to be handled');
    await caughtUp(sims, ingestor);
    await expectIndexMatchesPods(sims, index, hasher, [...work, ...after]);
  });

  it('drops a pod from the index when it leaves the endpoints file', async () => {
    const sims = await startSims(2);
    const file = endpointsFile(sims);
    const { index, ingestor } = await startIngestion({ endpointsFile: file });
    await ingestor.whenReady();
    await traffic(sims, prompts(10));
    await caughtUp(sims, ingestor);
    expect((await index.podCounts()).map((c) => c.pod).sort()).toEqual(sims.map((s) => s.id).sort());
    writeEndpoints(file, [sims[0]!]);
    await waitFor(() => ingestor.podStates().length === 1, 10_000, 'the pod to be removed');
    expect((await index.podCounts()).map((c) => c.pod)).toEqual([sims[0]!.id]);
  });

  it('fully indexes pods that were serving before the consumer started', async () => {
    const sims = await startSims(2);
    const work = prompts(16);
    await traffic(sims, work);
    const { index, hasher, ingestor } = await startIngestion({ endpointsFile: endpointsFile(sims) });
    await ingestor.whenReady();
    await expectIndexMatchesPods(sims, index, hasher, work);
  });

  it('survives malformed traffic and still applies the valid batches after it', async () => {
    const sims = await startSims(1);
    const [roguePort] = await freePorts(1);
    const rogue = new Publisher({ linger: 0 });
    await rogue.bind(`tcp://127.0.0.1:${roguePort}`);
    cleanups.push(() => rogue.close());
    const rogueEntry = { name: 'rogue', address: '127.0.0.1', port: 9, eventPort: roguePort, model: MODEL };
    const lines: { level: number; pod?: string; msg: string }[] = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line) as { level: number; pod?: string; msg: string }) });
    const { index, registry, ingestor } = await startIngestion({ endpointsFile: endpointsFile(sims, [rogueEntry]), topicPrefix: '' }, undefined, logger);
    await ingestor.whenReady();
    const topic = Buffer.from('kv@127.0.0.1:9@Qwen/Qwen3-0.6B');
    const valid = (seq: bigint): Buffer[] => [
      topic,
      Buffer.from(encodeSeq(seq)),
      Buffer.from(
        encodeEventBatch({
          ts: Date.now() / 1000,
          dataParallelRank: 0,
          events: [{ type: 'BlockStored', blockHashes: BigUint64Array.of(77n), parentBlockHash: null, tokenIds: Uint32Array.from({ length: 16 }, (_, i) => i + 5), blockSize: 16, loraId: null, medium: 'GPU', loraName: null, extraKeys: null, groupIdx: null, kvCacheSpecKind: null, kvCacheSpecSlidingWindow: null }],
        }),
      ),
    ];
    // The subscription propagates asynchronously: keep sending until a valid batch lands.
    await waitFor(async () => {
      await rogue.send([topic, Buffer.from('only two frames')]);
      await rogue.send([topic, Buffer.from([1, 2, 3]), Buffer.from('short seq')]);
      await rogue.send([topic, Buffer.from(encodeSeq(0n)), Buffer.from('random bytes, not msgpack')]);
      await rogue.send([topic, Buffer.from(encodeSeq(1n)), Buffer.from([0x93, 0xcb, 0x41])]);
      await rogue.send(valid(2n));
      return (await index.podCounts()).some((c) => c.pod === '127.0.0.1:9' && c.entries === 1);
    }, 10_000, 'the valid batch after the garbage');
    const errors = (await registry.getSingleMetric('llm_d_epp_kv_cache_events_zmq_errors_total')!.get()).values.filter((v) => v.labels['pod_identifier'] === '127.0.0.1:9');
    const byOperation = Object.fromEntries(errors.map((v) => [v.labels['operation'], v.value]));
    expect(byOperation['frames']).toBeGreaterThan(0);
    expect(byOperation['decode']).toBeGreaterThan(0);
    // Logged once per pod and kind, with the reason; every later one is only counted.
    const warned = lines.filter((l) => l.level === 40 && l.pod === '127.0.0.1:9').map((l) => l.msg);
    expect(warned.filter((m) => m.startsWith('malformed event message'))).toHaveLength(1);
    expect(warned.filter((m) => m.startsWith('undecodable event batch'))).toHaveLength(1);
    // The real pod next door is unaffected.
    await traffic(sims, prompts(2));
    await caughtUp(sims, ingestor);
  });

  it('receives events in centralized mode, naming pods from their topics', async () => {
    const [bindPort] = await freePorts(1);
    const { index, hasher, ingestor } = await startIngestion({ mode: 'centralized', centralizedEndpoint: `tcp://127.0.0.1:${bindPort}` });
    const sims = await startSims(1, { kvEventsConfig: { enable_kv_cache_events: true, endpoint: `tcp://127.0.0.1:${bindPort}` } });
    const work = prompts(8);
    // The connecting publisher may lose its first batches (slow joiner); later ones arrive. Each
    // attempt sends new prompts: a repeated one is a cache hit, which publishes nothing.
    let attempt = 0;
    await waitFor(async () => {
      const shift = 7 * attempt++;
      await traffic(sims, work.map((p) => p.map((t) => t + 50_000 + shift)));
      return ingestor.podStates().some((p) => p.id === sims[0]!.id && p.stream.applied > 0);
    }, 10_000, 'centralized events');
    await traffic(sims, work.map((p) => p.map((t) => t + 1)));
    // Await this prompt's own events: entries from the warm-up attempts say nothing about them.
    const keys = hasher.keys(work[0]!.map((t) => t + 1), MODEL);
    await waitFor(async () => scoreLookup(await index.lookup(keys), keys.length)[0]?.pod === sims[0]!.id, 5000, 'the prompt\'s blocks under the topic\'s pod');
  });

  it('in centralized mode, keeps a pod known only from its topic when discovery changes', async () => {
    const [bindPort] = await freePorts(1);
    const discovery = new ScriptedDiscovery();
    const { index, ingestor } = await startIngestion({ mode: 'centralized', centralizedEndpoint: `tcp://127.0.0.1:${bindPort}` }, [discovery]);
    const sims = await startSims(1, { kvEventsConfig: { enable_kv_cache_events: true, endpoint: `tcp://127.0.0.1:${bindPort}` } });
    const entriesOf = async (pod: string): Promise<number> => (await index.podCounts()).find((c) => c.pod === pod)?.entries ?? 0;
    // New prompts per attempt: the first batches may be lost (slow joiner), and a repeated prompt
    // is a cache hit that publishes nothing (centralized mode has no replay to recover them).
    let attempt = 0;
    await waitFor(async () => {
      const shift = 7 * attempt++;
      await traffic(sims, prompts(4).map((p) => p.map((t) => t + shift)));
      return (await entriesOf(sims[0]!.id)) > 0;
    }, 10_000, 'centralized events');
    await caughtUp(sims, ingestor);
    const held = await entriesOf(sims[0]!.id);
    // Another pod appears in discovery; the pod discovery never listed is still publishing to us.
    const other: PodTarget = { id: '10.0.0.1:8000', name: 'other', address: '10.0.0.1', port: 8000, rank: 0, eventEndpoint: null, replayEndpoint: null, model: MODEL };
    discovery.report([other]);
    await waitFor(() => ingestor.hasPod(other.id), 5000, 'the discovered pod');
    expect(ingestor.hasPod(sims[0]!.id)).toBe(true);
    expect(await entriesOf(sims[0]!.id)).toBe(held);
  });
});
