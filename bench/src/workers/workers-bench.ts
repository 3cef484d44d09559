import { createServer, type Server } from 'node:http';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { loadExtProc, type ProcessingRequest, type ProcessingResponse__Output } from '@kvix/proto';
import { freePorts, repoRoot, spawnProcess, waitFor, type ManagedProcess } from '@kvix/test-support';
import { printTable, rng, writeResult } from '../harness.js';
import { prose } from '../text.js';

/**
 * Routing decisions per second of `kvix-epp --routing-workers 1` (one process) against 2 (a primary
 * ingesting and two routing workers sharing the ext_proc port), in the same run, closed loop: many
 * HTTP/2 connections each keeping several ext_proc streams busy with llm-d-shaped chat requests
 * (32 shared 2–5 k-token system prompts, a new question each), precise prefix scoring as deployed.
 * A decision is the header answer naming the endpoint. The load generator runs on the same machine,
 * so on a 2-core machine the workers, the primary and the generator share 2 cores.
 */

const MODEL = 'Qwen/Qwen3-0.6B';
const PODS = 8;
const CONNECTIONS = 8;
const STREAMS_PER_CONNECTION = 4;
const CLOCK_TICKS_PER_SECOND = 100;

interface ArmResult {
  workers: number;
  decisions: number;
  errors: number;
  seconds: number;
  decisionsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU of the EPP's processes (primary and workers) per decision. */
  eppCpuMsPerDecision: number;
  /** The primary's part of it (ingestion, relaying speculation, metrics); the whole process with 1. */
  primaryCpuMsPerDecision: number;
  /** Each worker's share of the workers' CPU (%): how evenly the connections were spread. */
  workerCpuShares: number[];
  load1: number;
}

function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

/** Pods that only answer the EPP's metrics scrapes: ext_proc decisions never reach them. */
async function fakePods(): Promise<{ servers: Server[]; ports: number[] }> {
  const ports = await freePorts(PODS);
  const servers = await Promise.all(
    ports.map(
      (port) =>
        new Promise<Server>((resolve) => {
          const s = createServer((_req, res) => res.end('vllm:num_requests_waiting{model_name="m"} 0\nvllm:num_requests_running{model_name="m"} 0\nvllm:kv_cache_usage_perc{model_name="m"} 0.1\n'));
          s.listen(port, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  return { servers, ports };
}

/**
 * Request bodies, each one new (a numbered question): a body seen before would be answered from
 * the tokenizer's result cache, which one process warms N times faster than N workers do.
 */
function chatBodies(): (n: number) => Buffer {
  const next = rng(11);
  const systems = Array.from({ length: 32 }, (_, i) => prose(100 + i, 8000 + Math.floor(next() * 12_000)));
  const questions = Array.from({ length: 256 }, (_, i) => prose(10_000 + i, 400 + Math.floor(next() * 1200)));
  return (n) => Buffer.from(JSON.stringify({ model: MODEL, max_tokens: 16, messages: [{ role: 'system', content: systems[n % systems.length]! }, { role: 'user', content: `Question ${n}: ${questions[n % questions.length]!}` }] }));
}

const header = (key: string, value: string): { key: string; rawValue: Buffer } => ({ key, rawValue: Buffer.from(value) });

async function startEpp(workers: number, podPorts: number[]): Promise<{ proc: ManagedProcess; extProcPort: number; metricsPort: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'kvix-bench-workers-'));
  const eventPorts = await freePorts(podPorts.length);
  // JSON is YAML: the endpoints file as the EPP reads it.
  writeFileSync(join(dir, 'endpoints.yaml'), JSON.stringify({ endpoints: podPorts.map((port, i) => ({ name: `pod-${i}`, address: '127.0.0.1', port, eventPort: eventPorts[i], model: MODEL })) }));
  const [gatewayPort, extProcPort, metricsPort] = (await freePorts(3)) as [number, number, number];
  const proc = spawnProcess(process.execPath, [
    join(repoRoot(), 'services/epp/bin/kvix-epp.js'),
    '--routing-workers', String(workers),
    '--endpoints-file', join(dir, 'endpoints.yaml'),
    '--gateway-port', String(gatewayPort),
    '--ext-proc-port', String(extProcPort),
    '--metrics-port', String(metricsPort),
    '--log-level', 'warn',
  ], { env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KVIX_'))) });
  await waitFor(async () => (await fetch(`http://127.0.0.1:${metricsPort}/healthz`).catch(() => null))?.status === 200, 60_000, 'the EPP to listen');
  // Readiness needs the pods' event streams, which these pods do not have: wait for the fronts instead.
  await waitFor(async () => proc.child.exitCode === null && (await probeDecision(extProcPort).catch(() => false)), 60_000, () => `the EPP to route\n${proc.output()}`);
  return { proc, extProcPort, metricsPort };
}

async function probeDecision(port: number): Promise<boolean> {
  const Client = loadExtProc().envoy.service.ext_proc.v3.ExternalProcessor;
  const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  try {
    const body = Buffer.from(JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] }));
    await decide(client as unknown as ExtProcClient, body);
    return true;
  } finally {
    client.close();
  }
}

type ExtProcClient = { Process(options?: { deadline: number }): ClientDuplexStream<ProcessingRequest, ProcessingResponse__Output>; close(): void };

/** A stream that has not answered in this long (an idle machine's figure) counts as an error. */
const DECISION_DEADLINE_MS = 30_000;

/**
 * One ext_proc stream as Envoy runs it up to the upstream: headers and body sent, the header answer
 * naming the endpoint (the decision, whose latency is returned), the body echoed, then the stream
 * closed cleanly. Streams are not reset after the decision: Node's HTTP/2 server closes a
 * connection that resets streams at that rate, and the reconnections would land anywhere.
 */
function decide(client: ExtProcClient, body: Buffer): Promise<number> {
  const t0 = performance.now();
  const call = client.Process({ deadline: Date.now() + DECISION_DEADLINE_MS });
  return new Promise<number>((resolve, reject) => {
    let decidedMs: number | null = null;
    let settled = false;
    const finish = (err: Error | null): void => {
      if (settled) return;
      settled = true;
      if (err) {
        call.cancel();
        reject(err);
      } else resolve(decidedMs!);
    };
    call.on('data', (a: ProcessingResponse__Output) => {
      if (decidedMs === null) {
        // Anything else first (an immediate response: no endpoints, shed) is not a decision.
        const routed = a.response === 'requestHeaders' && a.requestHeaders?.response?.headerMutation?.setHeaders.some((h) => h.header?.key === 'x-gateway-destination-endpoint');
        if (!routed) return finish(new Error(`answered ${a.response ?? 'nothing'} without an endpoint`));
        decidedMs = performance.now() - t0;
      }
      if (a.requestBody?.response?.bodyMutation?.streamedResponse?.endOfStream) call.end();
    });
    call.on('error', (err: ServiceError) => finish(err));
    call.on('end', () => finish(decidedMs === null ? new Error('stream ended without a decision') : null));
    call.write({ requestHeaders: { headers: { headers: [header(':method', 'POST'), header(':path', '/v1/chat/completions'), header(':authority', 'gw'), header('content-type', 'application/json')] }, endOfStream: false } });
    call.write({ requestBody: { body, endOfStream: true } });
  });
}

async function workerPids(metricsPort: number): Promise<number[]> {
  const r = await fetch(`http://127.0.0.1:${metricsPort}/debug/workers`).catch(() => null);
  if (!r || r.status !== 200) return [];
  return ((await r.json()) as { workers: { pid: number }[] }).workers.map((w) => w.pid);
}

async function runArm(workers: number, podPorts: number[], bodies: (n: number) => Buffer, warmupMs: number, measureMs: number): Promise<ArmResult> {
  const epp = await startEpp(workers, podPorts);
  const pids = [epp.proc.child.pid!, ...(workers > 1 ? await workerPids(epp.metricsPort) : [])];
  const Client = loadExtProc().envoy.service.ext_proc.v3.ExternalProcessor;
  // One HTTP/2 connection per client (a local subchannel pool each): node:cluster balances connections.
  // Opened one after another, each with a first decision, as a proxy's connections come up: node:cluster
  // hands a connection to a worker that is free to take it, and a burst of simultaneous connects can
  // all land on the worker that answered first (HTTP/2 connections then stay where they landed).
  const clients: ExtProcClient[] = [];
  for (let i = 0; i < CONNECTIONS; i++) {
    const client = new Client(`127.0.0.1:${epp.extProcPort}`, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }) as unknown as ExtProcClient;
    await decide(client, bodies(i));
    clients.push(client);
  }
  let measuring = false;
  let stop = false;
  let decisions = 0;
  let errors = 0;
  let cursor = 0;
  const latencies: number[] = [];
  const loop = async (client: ExtProcClient): Promise<void> => {
    while (!stop) {
      const body = bodies(cursor++);
      try {
        const ms = await decide(client, body);
        if (measuring) {
          decisions++;
          latencies.push(ms);
        }
      } catch {
        if (measuring) errors++;
      }
    }
  };
  const loops = clients.flatMap((c) => Array.from({ length: STREAMS_PER_CONNECTION }, () => loop(c)));
  await new Promise((r) => setTimeout(r, warmupMs));
  const cpu0 = pids.reduce((s, p) => s + cpuMs(p), 0);
  const primary0 = cpuMs(pids[0]!);
  const workers0 = pids.slice(1).map(cpuMs);
  const t0 = performance.now();
  measuring = true;
  await new Promise((r) => setTimeout(r, measureMs));
  measuring = false;
  const seconds = (performance.now() - t0) / 1000;
  const cpu = pids.reduce((s, p) => s + cpuMs(p), 0) - cpu0;
  const primaryCpu = cpuMs(pids[0]!) - primary0;
  const workerCpu = pids.slice(1).map((p, i) => cpuMs(p) - workers0[i]!);
  const workerTotal = workerCpu.reduce((a, b) => a + b, 0);
  stop = true;
  await Promise.all(loops);
  for (const c of clients) c.close();
  await epp.proc.stop('SIGTERM');
  latencies.sort((a, b) => a - b);
  const at = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN;
  return { workers, decisions, errors, seconds, decisionsPerSec: decisions / seconds, p50Ms: at(0.5), p99Ms: at(0.99), eppCpuMsPerDecision: decisions > 0 ? cpu / decisions : NaN, primaryCpuMsPerDecision: decisions > 0 ? primaryCpu / decisions : NaN, workerCpuShares: workerCpu.map((c) => Math.round((100 * c) / Math.max(1, workerTotal))), load1: loadavg()[0]! };
}

export async function runWorkersBenchmark(options: { quick: boolean }): Promise<void> {
  const { servers, ports } = await fakePods();
  const bodies = chatBodies();
  const warmupMs = options.quick ? 4000 : 8000;
  const measureMs = options.quick ? 8000 : 20_000;
  // Alternated so a change in the machine's load during the run shows as spread, not as a ratio.
  const order = options.quick ? [1, 2] : [1, 2, 2, 1];
  const loadBefore = loadavg()[0]!;
  const arms: ArmResult[] = [];
  try {
    for (const workers of order) arms.push(await runArm(workers, ports, bodies, warmupMs, measureMs));
  } finally {
    for (const s of servers) s.close();
  }
  const mean = (w: number, f: (a: ArmResult) => number): number => {
    const xs = arms.filter((a) => a.workers === w).map(f);
    return xs.reduce((s, x) => s + x, 0) / xs.length;
  };
  printTable(
    `EPP decisions/s, --routing-workers 1 vs 2 (closed loop, ${CONNECTIONS} connections × ${STREAMS_PER_CONNECTION} streams, precise profile; load ${loadBefore.toFixed(1)} → ${loadavg()[0]!.toFixed(1)})`,
    ['workers', 'decisions/s', 'p50 ms', 'p99 ms', 'EPP CPU ms/decision', 'primary CPU ms/decision', 'worker CPU split %', 'errors', 'load1'],
    arms.map((a) => [a.workers, a.decisionsPerSec.toFixed(0), a.p50Ms.toFixed(2), a.p99Ms.toFixed(2), a.eppCpuMsPerDecision.toFixed(2), a.primaryCpuMsPerDecision.toFixed(2), a.workerCpuShares.join('/') || '-', a.errors, a.load1.toFixed(1)]),
  );
  const ratio = mean(2, (a) => a.decisionsPerSec) / mean(1, (a) => a.decisionsPerSec);
  console.log(`2 workers / 1 process: ${ratio.toFixed(2)}× decisions/s`);
  writeResult('workers', { arms, ratio, loadBefore, loadAfter: loadavg()[0], connections: CONNECTIONS, streamsPerConnection: STREAMS_PER_CONNECTION });
}
