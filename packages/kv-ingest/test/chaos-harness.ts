import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RequestKeyHasher } from '@kvix/block-keys';
import { entriesAt, EventApplier, InMemoryIndex, scoreLookup } from '@kvix/kv-index';
import { freePortRange, waitFor } from '@kvix/test-support';
import { resolveSimConfig, SimPod, type SimConfig, type SimConfigInput } from '@kvix/vllm-sim';
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import { stringify } from 'yaml';
import { IngestMetrics, Ingestor, parseIngestConfig, type IngestConfigInput, type PodDebugState } from '../src/index.js';

/**
 * The pieces of the randomized chaos test (chaos.test.ts): a seeded PRNG, a fleet of simulated
 * pods that can be killed and started again on the same ports, an ingestor fed by an endpoints
 * file, a wait for quiescence that reads the ingestor's and the pods' own state, and the oracle
 * comparing the index's per-tier prefix of a prompt on every pod with the pod's /sim/prefix.
 */

export const MODEL = 'Qwen/Qwen3-0.6B';
/** The index's block size; engines may use another. */
export const INDEX_BLOCK = 16;

/** mulberry32: small, fast and good enough to drive a schedule; the same seed replays the same schedule. */
export class Prng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }
  /** Up to `n` distinct items, in random order. */
  sample<T>(items: readonly T[], n: number): T[] {
    const copy = [...items];
    for (let i = copy.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [copy[i], copy[j]] = [copy[j]!, copy[i]!];
    }
    return copy.slice(0, n);
  }
}

/** One pod of the fleet, as configured. */
export interface PodSpec {
  name: string;
  /** Overrides of the simulator's configuration (block size, offload, LoRA, DP, layout…). */
  sim: SimConfigInput;
  /** A LoRA adapter the pod serves (requests for it are keyed under its name). */
  lora?: string;
  /** Views compared with the pod's own (default all three): a tier the index cannot know exactly is left out. */
  checked?: readonly (keyof PrefixView)[];
  /** What the endpoints file says the pod runs (engine, lmcache): the rules its events are read by. */
  endpoint?: { engine?: 'vllm' | 'sglang'; lmcache?: 'none' | 'inproc' | 'mp' };
}

/** One routing endpoint: a data-parallel rank of a pod. */
export interface Rank {
  pod: FleetPod;
  rank: number;
  /** host:port, the index's pod identity. */
  id: string;
  http: string;
  /** Engine block size in tokens. */
  engineBlock: number;
}

export interface FleetPod {
  spec: PodSpec;
  config: SimConfig;
  sim: SimPod | null;
  ranks: Rank[];
  /** Listed in the endpoints file (the ingestor follows it). */
  listed: boolean;
  httpPort: number;
  eventPort: number;
  replayPort: number;
}

/** Ports the fleet took, so two pods never get overlapping ranges. */
const taken = new Set<number>();

async function portRange(count: number): Promise<number> {
  for (;;) {
    const base = await freePortRange(count);
    const ports = Array.from({ length: count }, (_, i) => base + i);
    if (ports.some((p) => taken.has(p))) continue;
    for (const p of ports) taken.add(p);
    return base;
  }
}

export class Fleet {
  readonly pods: FleetPod[] = [];
  /** The simulators' own warnings and errors (a fault that failed says why here). */
  readonly tape = new LogTape('warn');
  readonly endpointsFile = join(mkdtempSync(join(tmpdir(), 'kvix-chaos-')), 'endpoints.yaml');

  static async start(specs: readonly PodSpec[], timeScale: number): Promise<Fleet> {
    const fleet = new Fleet();
    for (const spec of specs) {
      const dp = Number(spec.sim.dataParallelSize ?? 1);
      const [httpPort, eventPort, replayPort] = [await portRange(dp), await portRange(dp), await portRange(dp)];
      const config = resolveSimConfig(
        {
          port: httpPort,
          timeScale,
          logLevel: 'silent',
          pythonHashSeed: '0',
          kvEventsConfig: { enable_kv_cache_events: true, endpoint: `tcp://*:${eventPort}`, replay_endpoint: `tcp://*:${replayPort}` },
          ...spec.sim,
        },
        {},
      );
      const pod: FleetPod = { spec, config, sim: null, ranks: [], listed: true, httpPort, eventPort, replayPort };
      pod.ranks = Array.from({ length: dp }, (_, r) => ({ pod, rank: r, id: `127.0.0.1:${httpPort + r}`, http: `http://127.0.0.1:${httpPort + r}`, engineBlock: config.blockSize }));
      fleet.pods.push(pod);
      pod.sim = await SimPod.start(config, fleet.tape.logger.child({ sim: spec.name }));
    }
    fleet.writeEndpoints();
    return fleet;
  }

  get ranks(): Rank[] {
    return this.pods.flatMap((p) => p.ranks);
  }

  /** Replaced by an atomic rename, as discovery expects. */
  writeEndpoints(): void {
    const entries = this.pods
      .filter((p) => p.listed)
      .map((p) => ({ name: p.spec.name, address: '127.0.0.1', port: p.httpPort, eventPort: p.eventPort, replayPort: p.replayPort, model: MODEL, dataParallelSize: p.ranks.length, ...(p.spec.endpoint ?? {}) }));
    writeFileSync(`${this.endpointsFile}.tmp`, stringify({ endpoints: entries }));
    renameSync(`${this.endpointsFile}.tmp`, this.endpointsFile);
  }

  /** The pod's process dies: its sockets close and everything it cached is gone. It counts as down at once. */
  kill(pod: FleetPod): Promise<void> {
    const sim = pod.sim;
    pod.sim = null;
    return sim?.stop() ?? Promise.resolve();
  }

  /** A new process on the same ports, with an empty cache and its sequence from 0. */
  async revive(pod: FleetPod): Promise<void> {
    pod.sim = await SimPod.start(pod.config, this.tape.logger.child({ sim: pod.spec.name }));
  }

  async stop(): Promise<void> {
    await Promise.allSettled(this.pods.map((p) => p.sim?.stop()));
    for (const p of this.pods) for (const port of [p.httpPort, p.eventPort, p.replayPort]) for (let r = 0; r < p.ranks.length; r++) taken.delete(port + r);
  }
}

export async function postJson(url: string, body: unknown): Promise<{ status: number; json: unknown }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, json };
}

export interface SimState {
  running: number;
  waiting: number;
  publisher: { nextSeq: string; dropped: number; published: number };
}

export async function simState(rank: Rank): Promise<SimState> {
  return (await (await fetch(`${rank.http}/sim/state`)).json()) as SimState;
}

/** An in-memory log the test prints around a failure (the ingestor's state changes, one line each). */
export class LogTape {
  readonly lines: Record<string, unknown>[] = [];
  readonly logger: Logger;
  constructor(level: 'info' | 'warn' = 'info', max = 20_000) {
    this.logger = pino(
      { level },
      {
        write: (line: string) => {
          this.lines.push(JSON.parse(line) as Record<string, unknown>);
          if (this.lines.length > max) this.lines.splice(0, this.lines.length - max);
        },
      },
    );
  }
  /** The last lines about one pod (or every line without one), compact. */
  about(pod: string | null, n = 40): string[] {
    return this.lines
      .filter((l) => pod === null || l['pod'] === pod)
      .slice(-n)
      .map(({ level: _l, time, pid: _p, hostname: _h, ...rest }) => `${new Date(time as number).toISOString().slice(11, 23)} ${JSON.stringify(rest)}`);
  }
}

export interface Ingestion {
  index: InMemoryIndex;
  hasher: RequestKeyHasher;
  ingestor: Ingestor;
  registry: Registry;
  tape: LogTape;
  stop(): Promise<void>;
}

export async function startIngestion(endpointsFile: string, config: IngestConfigInput = {}): Promise<Ingestion> {
  const index = new InMemoryIndex({ sweepIntervalMs: 0 });
  const hasher = new RequestKeyHasher({ blockSize: INDEX_BLOCK });
  const registry = new Registry();
  const metrics = new IngestMetrics(registry);
  const applier = new EventApplier(index, { hasher, observer: metrics.applierObserver() });
  const tape = new LogTape();
  const ingestor = new Ingestor({
    config: parseIngestConfig({
      endpointsFile,
      endpointsPollIntervalMs: 200,
      replayIdleTimeoutMs: 1000,
      replayCooldownMs: 1000,
      readinessTimeoutMs: 10_000,
      tailCheckMs: 200,
      reconnectMaxIntervalMs: 300,
      ...config,
    }),
    applier,
    metrics,
    logger: tape.logger,
  });
  await ingestor.start();
  return { index, hasher, ingestor, registry, tape, stop: () => ingestor.stop() };
}

/** How often the ingestor noticed a pod's engine starting over: a sequence reset or a verification after reconnecting. */
export async function restartsSeen(registry: Registry, pod: string): Promise<number> {
  const resets = (await registry.getSingleMetric('kvix_ingest_sequence_resets_total')!.get()).values.filter((v) => v.labels['pod'] === pod);
  const reconnects = (await registry.getSingleMetric('kvix_ingest_replays_total')!.get()).values.filter((v) => v.labels['pod'] === pod && v.labels['reason'] === 'reconnect');
  return [...resets, ...reconnects].reduce((a, v) => a + v.value, 0);
}

export function podState(ingestor: Ingestor, id: string): PodDebugState | undefined {
  return ingestor.podStates().find((p) => p.id === id);
}

/** One prompt of the workload: its tokens and the model (base or a LoRA adapter) it was sent to. */
export interface Prompt {
  tokens: number[];
  /** A LoRA adapter's name, or null for the base model. */
  lora: string | null;
}

export interface PrefixView {
  gpu: number;
  cpu: number;
  any: number;
}

export interface Mismatch {
  pod: string;
  rank: Rank;
  prompt: Prompt;
  promptIndex: number;
  index: PrefixView;
  sim: PrefixView;
  /** Only an index at most the pod's view was required (the pod is tainted, see chaos.test.ts). `index` is in request blocks, `sim` in engine blocks. */
  bound: boolean;
}

/**
 * The index's view of a prompt on one rank, in request blocks: the longest run from block 0 in
 * any tier (from the scorer, as routing sees it) and per tier.
 */
export async function indexView(ing: Ingestion, rank: Rank, prompt: Prompt): Promise<PrefixView> {
  const keys = ing.hasher.keys(prompt.tokens, prompt.lora ?? MODEL);
  const result = await ing.index.lookup(keys, { earlyStop: false, pods: [rank.id] });
  const any = scoreLookup(result, keys.length).find((s) => s.pod === rank.id)?.matchedBlocks ?? 0;
  const run = (tier: string): number => {
    let n = 0;
    while (n < result.keyCount && entriesAt(result, n).some((e) => e.pod === rank.id && e.tier === tier && !e.speculative)) n++;
    return n;
  };
  return { gpu: run('gpu'), cpu: run('cpu'), any };
}

/**
 * Whether an index run of `requestBlocks` agrees with a pod holding `engineBlocks` of the prompt.
 * With equal block sizes they are equal. Otherwise the index holds a request block when engine
 * blocks the pod holds cover its tokens, so: every request block inside the pod's engine blocks is
 * held, and every engine block inside the index's run is held by the pod. The index may hold one
 * request block more, lying inside an engine block of another prompt with the same leading tokens
 * (the engine cannot reuse part of a block, the index cannot tell). `atMost`: only the second
 * half (the index must not claim more than the pod holds).
 */
export function agrees(requestBlocks: number, engineBlocks: number, engineBlock: number, atMost = false): boolean {
  const claimed = Math.floor((requestBlocks * INDEX_BLOCK) / engineBlock) <= engineBlocks;
  return atMost ? claimed : claimed && requestBlocks >= Math.floor((engineBlocks * engineBlock) / INDEX_BLOCK);
}

export async function simView(rank: Rank, prompt: Prompt): Promise<PrefixView> {
  if (prompt.lora !== null && rank.pod.spec.lora !== prompt.lora) return { gpu: 0, cpu: 0, any: 0 };
  const body: Record<string, unknown> = { tokens: prompt.tokens };
  if (prompt.lora !== null) body['model'] = prompt.lora;
  const { status, json } = await postJson(`${rank.http}/sim/prefix`, body);
  if (status !== 200) throw new Error(`/sim/prefix on ${rank.id} answered ${status}: ${JSON.stringify(json)}`);
  const v = json as { gpuBlocks: number; cpuBlocks: number; anyTierBlocks: number };
  return { gpu: v.gpuBlocks, cpu: v.cpuBlocks, any: v.anyTierBlocks };
}

/** Waits until `check` holds, then fails with `describe()` appended when it never does. */
export async function settle(check: () => Promise<boolean>, timeoutMs: number, what: string, describe: () => Promise<string>): Promise<void> {
  try {
    await waitFor(check, timeoutMs, what);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${await describe()}`, { cause: err });
  }
}
