import { createServer, type Server } from 'node:http';
import { parentPort, workerData } from 'node:worker_threads';
import { RequestKeyHasher } from '@kvix/block-keys';
import { encodeEventBatch, encodeSeq, type KvEvent } from '@kvix/kv-events';
import { LocalTokenizer, type ChatMessage } from '@kvix/tokenization';
import { Publisher } from 'zeromq';
import { Workload, type WorkloadSpec } from '../routing/workload.js';
import { gpuStored } from '../stored-event.js';

/**
 * Synthetic vLLM pods for the decision benchmark, on their own thread: per pod a ZeroMQ publisher
 * of KV events in vLLM's format and a /metrics endpoint. They serve no requests; the benchmark
 * tells them where each request was routed, and the pod then behaves as an engine would for it:
 * after its (modelled) prefill it stores the prompt's blocks it did not hold, later the generated
 * blocks, and evicts least recently used blocks beyond its capacity. So the router ingests the
 * event stream its own decisions cause, at the rate they cause it.
 */
export interface FleetWorkerData {
  /** One fleet per benchmark arm, each with its own pods and state. */
  fleets: { servingPorts: number[]; eventPorts: number[] }[];
  workload: WorkloadSpec;
  /** Requests of the workload sequence whose token ids are prepared before the clock starts. */
  requests: number;
  blockSize: number;
  capacityBlocks: number;
  /** Engine model: a step every tickMs; prefill at prefillTokensPerMs after a fixed overhead; decode at decodeMsPerToken. */
  model: { tickMs: number; overheadMs: number; prefillTokensPerMs: number; decodeMsPerToken: number };
}

export type ToFleet =
  | { type: 'routed'; fleet: number; seq: number; pod: number; outputTokens: number }
  | { type: 'counters' }
  | { type: 'stop' };

export type FromFleet =
  | { type: 'ready'; meanPromptTokens: number }
  | { type: 'finished'; fleet: number; seq: number }
  /** `cpuMs`: this thread's CPU time so far (the benchmark takes it out of the process's). */
  | { type: 'counters'; batches: number; blocksStored: number; blocksRemoved: number; cpuMs: number };

const data = workerData as FleetWorkerData;
const MODEL = data.workload.model;
const engineHasher = new RequestKeyHasher({ blockSize: data.blockSize, seed: 'engine' });

// Every request's token ids and engine keys, prepared before anything is timed.
const tokenizer = await LocalTokenizer.bundled(MODEL);
const workload = new Workload(data.workload);
const promptTokens: Uint32Array[] = [];
const promptKeys: BigUint64Array[] = [];
let tokenTotal = 0;
for (let i = 0; i < data.requests; i++) {
  const r = workload.next();
  const ids = Uint32Array.from(tokenizer.encodeChat(r.messages as ChatMessage[]));
  promptTokens.push(ids);
  promptKeys.push(engineHasher.keys(ids, MODEL));
  tokenTotal += ids.length;
}

interface Pending {
  at: number;
  events: KvEvent[];
}

class Pod {
  /** Engine keys held, least recently used first. */
  private readonly held = new Map<bigint, true>();
  private readonly pending: Pending[] = [];
  private seq = 0n;
  running = 0;
  /** Next time this pod's engine is free to prefill (queued prefills wait). */
  private busyUntil = 0;
  readonly topic: Buffer;

  constructor(
    readonly servingPort: number,
    private readonly socket: Publisher,
    private readonly metrics: Server,
  ) {
    this.topic = Buffer.from(`kv@127.0.0.1:${servingPort}@${MODEL}`);
  }

  /** Simulates serving request `seq`; returns when its first token and its end happen (ms, performance clock). */
  serve(seq: number, outputTokens: number, now: number): { firstToken: number; end: number } {
    const keys = promptKeys[seq]!;
    const tokens = promptTokens[seq]!;
    const bs = data.blockSize;
    let first = 0;
    while (first < keys.length && this.held.has(keys[first]!)) first++;
    const uncached = tokens.length - first * bs;
    const start = Math.max(now, this.busyUntil);
    const prefillEnd = start + data.model.overheadMs + uncached / data.model.prefillTokensPerMs;
    this.busyUntil = prefillEnd;
    const end = prefillEnd + outputTokens * data.model.decodeMsPerToken;
    const m = data.model;
    const storedAt = prefillEnd;
    // The prompt's blocks are stored as prefill completes them; a cached prefix is only touched.
    this.pending.push({
      at: storedAt,
      events: [gpuStored(keys.slice(first), first > 0 ? keys[first - 1]! : null, tokens.slice(first * bs, keys.length * bs), bs)],
    });
    for (let i = 0; i < first; i++) this.touch(keys[i]!);
    // Generated tokens fill further blocks while decoding (ids the router never sees again).
    const outBlocks = Math.floor((tokens.length - keys.length * bs + outputTokens) / bs);
    if (outBlocks > 0) {
      const outTokens = new Uint32Array(keys.length * bs + outBlocks * bs);
      outTokens.set(tokens.subarray(0, keys.length * bs));
      for (let i = keys.length * bs; i < outTokens.length; i++) outTokens[i] = 1000 + ((seq * 7919 + i * 31) % 100_000);
      const outKeys = engineHasher.keys(outTokens, MODEL).slice(keys.length);
      this.pending.push({ at: end - m.tickMs, events: [gpuStored(outKeys, keys.length > 0 ? keys[keys.length - 1]! : null, outTokens.slice(keys.length * bs), bs)] });
    }
    this.running++;
    return { firstToken: prefillEnd, end };
  }

  private touch(key: bigint): void {
    if (this.held.delete(key)) this.held.set(key, true);
  }

  /** One engine step: publishes what completed since the last one (one batch, as vLLM does). */
  async step(now: number, counters: Counters): Promise<void> {
    if (this.pending.length === 0 || this.pending[0]!.at > now) {
      this.pending.sort((a, b) => a.at - b.at);
      if (this.pending.length === 0 || this.pending[0]!.at > now) return;
    }
    const events: KvEvent[] = [];
    while (this.pending.length > 0 && this.pending[0]!.at <= now) {
      for (const ev of this.pending.shift()!.events) {
        if (ev.type !== 'BlockStored') continue;
        // Blocks already held (another request stored them first) are not stored twice.
        let skip = 0;
        while (skip < ev.blockHashes.length && this.held.has(ev.blockHashes[skip]!)) this.touch(ev.blockHashes[skip++]!);
        if (skip === ev.blockHashes.length) continue;
        const hashes = skip === 0 ? ev.blockHashes : ev.blockHashes.slice(skip);
        const parent = skip === 0 ? ev.parentBlockHash : ev.blockHashes[skip - 1]!;
        for (const k of hashes) this.held.set(k, true);
        events.push(gpuStored(hashes, parent, ev.tokenIds.slice(skip * data.blockSize), data.blockSize));
        counters.blocksStored += hashes.length;
      }
    }
    const over = this.held.size - data.capacityBlocks;
    if (over > 0) {
      const removed = new BigUint64Array(over);
      let i = 0;
      for (const k of this.held.keys()) {
        if (i === over) break;
        removed[i++] = k;
      }
      for (const k of removed) this.held.delete(k);
      events.push({ type: 'BlockRemoved', blockHashes: removed, medium: 'GPU', groupIdx: 0 });
      counters.blocksRemoved += over;
    }
    if (events.length === 0) return;
    const payload = encodeEventBatch({ ts: (performance.timeOrigin + now) / 1000, events, dataParallelRank: 0 }, { layout: 'array' });
    await this.socket.send([this.topic, Buffer.from(encodeSeq(this.seq++)), payload]);
    counters.batches++;
  }

  metricsText(): string {
    const usage = Math.min(1, this.held.size / data.capacityBlocks);
    return [
      '# TYPE vllm:num_requests_running gauge',
      `vllm:num_requests_running{model_name="${MODEL}"} ${this.running}`,
      '# TYPE vllm:num_requests_waiting gauge',
      `vllm:num_requests_waiting{model_name="${MODEL}"} ${Math.max(0, Math.round((this.busyUntil - performance.now()) / 200))}`,
      '# TYPE vllm:kv_cache_usage_perc gauge',
      `vllm:kv_cache_usage_perc{model_name="${MODEL}"} ${usage}`,
      '# TYPE vllm:cache_config_info gauge',
      `vllm:cache_config_info{block_size="${data.blockSize}",num_gpu_blocks="${data.capacityBlocks}"} 1`,
      '',
    ].join('\n');
  }

  async close(): Promise<void> {
    this.socket.close();
    await new Promise<void>((r) => this.metrics.close(() => r()));
  }
}

interface Counters {
  batches: number;
  blocksStored: number;
  blocksRemoved: number;
}

const fleets: Pod[][] = [];
for (const f of data.fleets) {
  const pods: Pod[] = [];
  for (let i = 0; i < f.servingPorts.length; i++) {
    const socket = new Publisher({ sendHighWaterMark: 1_000_000, linger: 0 });
    await socket.bind(`tcp://127.0.0.1:${f.eventPorts[i]}`);
    let pod: Pod | null = null;
    const server = createServer((req, res) => {
      if (req.url === '/metrics' && pod) {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
        res.end(pod.metricsText());
      } else {
        res.writeHead(req.url === '/health' ? 200 : 404);
        res.end();
      }
    });
    server.keepAliveTimeout = 65_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(f.servingPorts[i], '127.0.0.1', () => resolve());
    });
    pod = new Pod(f.servingPorts[i]!, socket, server);
    pods.push(pod);
  }
  fleets.push(pods);
}

const counters: Counters = { batches: 0, blocksStored: 0, blocksRemoved: 0 };
/** Requests still running: when each ends (the router is told, so its in-flight counts are real). */
const running: { end: number; fleet: number; seq: number; pod: Pod }[] = [];
let stopped = false;

async function engineLoop(): Promise<void> {
  while (!stopped) {
    const now = performance.now();
    for (const pods of fleets) for (const pod of pods) await pod.step(now, counters);
    if (running.length > 0) {
      running.sort((a, b) => a.end - b.end);
      while (running.length > 0 && running[0]!.end <= now) {
        const r = running.shift()!;
        r.pod.running--;
        parentPort!.postMessage({ type: 'finished', fleet: r.fleet, seq: r.seq } satisfies FromFleet);
      }
    }
    await new Promise((r) => setTimeout(r, data.model.tickMs));
  }
}

parentPort!.on('message', (msg: ToFleet) => {
  if (msg.type === 'routed') {
    const pod = fleets[msg.fleet]![msg.pod]!;
    const { end } = pod.serve(msg.seq % promptKeys.length, msg.outputTokens, performance.now());
    running.push({ end, fleet: msg.fleet, seq: msg.seq, pod });
  } else if (msg.type === 'counters') {
    const cpu = process.threadCpuUsage();
    parentPort!.postMessage({ type: 'counters', ...counters, cpuMs: (cpu.user + cpu.system) / 1000 } satisfies FromFleet);
  } else {
    stopped = true;
    void Promise.all(fleets.flat().map((p) => p.close())).then(() => parentPort!.close());
  }
});
void engineLoop();
parentPort!.postMessage({ type: 'ready', meanPromptTokens: tokenTotal / Math.max(1, data.requests) } satisfies FromFleet);
