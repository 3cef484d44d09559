import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { EnvoyProcess, findEnvoy, ENVOY_INSTALL_HINT, envoyVersion, localEnvoyConfig } from '@kvix/envoy';
import { freePorts, repoRoot, spawnProcess, waitFor, type ManagedProcess } from '@kvix/test-support';
import { writeEndpointsFile } from '@kvix/vllm-sim';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { printTable, writeResult } from '../harness.js';
import type { StepResult, ToLoadgen } from './loadgen.js';

/**
 * What a request pays for being routed: the same fixed small completion sent straight to a pod
 * (the baseline), through a real Envoy running deploy/envoy/envoy.yaml with the EPP as its
 * ext_proc server, and through the EPP's own HTTP gateway, at 50, 200 and 500 requests/s. All
 * arms run in one process tree in one run (their order rotated per rate), so they share the
 * machine's state; the figures are the latency each adds over direct, and the CPU the EPP (and
 * Envoy) spend per request, read from /proc.
 */

const MODEL = 'Qwen/Qwen3-0.6B';
const RATES = [50, 200, 500];
/** A fixed small completion: one output token, a short prompt the tokenizer caches. */
const BODY = JSON.stringify({ model: MODEL, max_tokens: 1, messages: [{ role: 'user', content: 'Reply with one word: ready?' }] });
const PATH = '/v1/chat/completions';

type Arm = 'direct' | 'envoy+epp' | 'epp-gateway';
const ARMS: Arm[] = ['direct', 'envoy+epp', 'epp-gateway'];

interface Row {
  rate: number;
  arm: Arm;
  sent: number;
  errors: number;
  firstError: string | null;
  sendRate: number;
  p50Ms: number;
  p99Ms: number;
  eppCpuMsPerRequest: number;
  /** The EPP's CPU per request less what it burns idle (scraping, ingestion): the direct arm's rate over the same time. */
  eppNetCpuMsPerRequest: number;
  envoyCpuMsPerRequest: number | null;
  seconds: number;
  eppCpuMs: number;
  load1: number;
}

const CLOCK_TICKS_PER_SECOND = 100;

/** CPU time a process has used so far, ms (utime + stime from /proc/<pid>/stat). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

class Loadgen {
  private readonly worker = new Worker(new URL('./loadgen.js', import.meta.url));
  run(target: string, ratePerSec: number, seconds: number): Promise<StepResult> {
    return new Promise((resolve) => {
      this.worker.once('message', (m: StepResult) => resolve(m));
      this.worker.postMessage({ type: 'step', target, ratePerSec, seconds, body: BODY, path: PATH } satisfies ToLoadgen);
    });
  }
  async stop(): Promise<void> {
    this.worker.postMessage({ type: 'stop' } satisfies ToLoadgen);
    await this.worker.terminate();
  }
}

async function startPod(): Promise<{ proc: ManagedProcess; url: string; port: number; eventPort: number; replayPort: number }> {
  const [port, eventPort, replayPort] = (await freePorts(3)) as [number, number, number];
  // Simulated time 1000× faster than real: the pod answers in well under a millisecond, so what is
  // measured is the path to it, not the model.
  const proc = spawnProcess(process.execPath, [
    join(repoRoot(), 'services/vllm-sim/bin/vllm-sim.js'),
    '--host', '127.0.0.1', '--port', String(port), '--time-scale', '1000', '--log-level', 'warn', '--python-hash-seed', '0',
    '--kv-events-config', JSON.stringify({ enable_kv_cache_events: true, endpoint: `tcp://*:${eventPort}`, replay_endpoint: `tcp://*:${replayPort}` }),
  ]);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${url}/health`)).status === 200, 60_000, `pod ${port} (${proc.output().slice(-300)})`);
  return { proc, url, port, eventPort, replayPort };
}

export async function runGatewayBenchmark(options: { quick: boolean }): Promise<void> {
  const envoyBin = findEnvoy();
  if (!envoyBin) throw new Error(`gateway benchmark: Envoy is not installed: ${ENVOY_INSTALL_HINT}`);
  const seconds = options.quick ? 3 : 10;
  const pods = [await startPod(), await startPod()];
  const file = join(mkdtempSync(join(tmpdir(), 'kvix-bench-gateway-')), 'endpoints.yaml');
  writeEndpointsFile(file, pods.map((p, i) => ({ name: `pod-${i}`, address: '127.0.0.1', port: p.port, eventPort: p.eventPort, replayPort: p.replayPort, model: MODEL })));
  const [gatewayPort, extProcPort, metricsPort] = (await freePorts(3)) as [number, number, number];
  // The EPP at its default settings (default scheduler, embedded index, tokenizer workers), as a
  // process so that its CPU time is its own.
  const epp = spawnProcess(process.execPath, [
    join(repoRoot(), 'services/epp/bin/kvix-epp.js'),
    '--endpoints-file', file, '--gateway-host', '127.0.0.1', '--gateway-port', String(gatewayPort), '--ext-proc-host', '127.0.0.1', '--ext-proc-port', String(extProcPort),
    '--metrics-host', '127.0.0.1', '--metrics-port', String(metricsPort), '--log-level', 'warn',
  ]);
  const loadgen = new Loadgen();
  let envoy: EnvoyProcess | undefined;
  try {
    await waitFor(async () => (await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).status === 200, 60_000, `the EPP ready (${epp.output().slice(-300)})`);
    envoy = await EnvoyProcess.start({ bin: envoyBin.path, config: localEnvoyConfig({ extProc: [`127.0.0.1:${extProcPort}`], pods: pods.map((p) => `127.0.0.1:${p.port}`) }), concurrency: 1 });
    const targets: Record<Arm, string> = { direct: pods[0]!.url, 'envoy+epp': envoy.url(), 'epp-gateway': `http://127.0.0.1:${gatewayPort}` };
    console.log(`\ngateway overhead: Envoy ${envoyVersion(envoyBin.path) ?? '?'} (deploy/envoy/envoy.yaml, 1 worker thread), EPP at default settings, 2 simulated pods; ${seconds} s per step; load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    // Warm-up: connections, JIT, the tokenizer's cache, Envoy's pools.
    for (const arm of ARMS) await loadgen.run(targets[arm], 50, options.quick ? 1 : 2);

    const rows: Row[] = [];
    for (const [i, rate] of RATES.entries()) {
      // Rotated per rate so that no arm always runs first (or last) on a machine whose load drifts.
      const order = [...ARMS.slice(i % ARMS.length), ...ARMS.slice(0, i % ARMS.length)];
      for (const arm of order) {
        const eppPid = epp.child.pid!;
        const eppBefore = cpuMs(eppPid);
        const envoyBefore = envoy.pid !== undefined ? cpuMs(envoy.pid) : 0;
        const t0 = performance.now();
        const r = await loadgen.run(targets[arm], rate, seconds);
        const elapsed = (performance.now() - t0) / 1000;
        const done = r.sent - r.errors;
        const sorted = [...r.latenciesMs].sort((a, b) => a - b);
        rows.push({
          rate,
          arm,
          sent: r.sent,
          errors: r.errors,
          firstError: r.firstError,
          sendRate: r.sendRate,
          p50Ms: percentile(sorted, 50),
          p99Ms: percentile(sorted, 99),
          eppCpuMsPerRequest: (cpuMs(eppPid) - eppBefore) / Math.max(done, 1),
          eppNetCpuMsPerRequest: NaN,
          seconds: elapsed,
          eppCpuMs: cpuMs(eppPid) - eppBefore,
          envoyCpuMsPerRequest: envoy.pid !== undefined && arm === 'envoy+epp' ? (cpuMs(envoy.pid) - envoyBefore) / Math.max(done, 1) : null,
          load1: loadavg()[0]!,
        });
      }
    }

    const direct = (rate: number): Row => rows.find((x) => x.rate === rate && x.arm === 'direct')!;
    for (const x of rows) {
      const idleMsPerSecond = direct(x.rate).eppCpuMs / direct(x.rate).seconds;
      x.eppNetCpuMsPerRequest = x.arm === 'direct' ? 0 : Math.max(0, x.eppCpuMs - idleMsPerSecond * x.seconds) / Math.max(x.sent - x.errors, 1);
    }
    const plus = (v: number): string => `${v >= 0 ? '+' : '−'}${Math.abs(v).toFixed(2)}`;
    printTable(
      'latency of a fixed small completion (ms) and CPU per request; Δ = over direct at the same rate',
      ['rate/s', 'arm', 'sent', 'errors', 'p50', 'p99', 'Δp50', 'Δp99', 'EPP CPU ms/req', 'less idle', 'Envoy CPU ms/req', 'load'],
      RATES.flatMap((rate) =>
        ARMS.map((arm) => {
          const x = rows.find((r) => r.rate === rate && r.arm === arm)!;
          const base = direct(rate);
          return [
            rate,
            arm,
            x.sent,
            x.errors,
            x.p50Ms.toFixed(2),
            x.p99Ms.toFixed(2),
            arm === 'direct' ? '' : plus(x.p50Ms - base.p50Ms),
            arm === 'direct' ? '' : plus(x.p99Ms - base.p99Ms),
            arm === 'direct' ? `(${x.eppCpuMsPerRequest.toFixed(3)} idle)` : x.eppCpuMsPerRequest.toFixed(3),
            arm === 'direct' ? '' : x.eppNetCpuMsPerRequest.toFixed(3),
            x.envoyCpuMsPerRequest === null ? '' : x.envoyCpuMsPerRequest.toFixed(3),
            x.load1.toFixed(1),
          ];
        }),
      ),
    );
    for (const x of rows.filter((r) => r.firstError !== null)) console.log(`  ${x.arm} at ${x.rate}/s: ${x.errors} errors, first: ${x.firstError}`);
    const at200 = rows.find((r) => r.rate === 200 && r.arm === 'envoy+epp')!;
    const at500 = rows.find((r) => r.rate === 500 && r.arm === 'envoy+epp')!;
    const goal = {
      p50AddedAt200Ms: at200.p50Ms - direct(200).p50Ms,
      p99AddedAt200Ms: at200.p99Ms - direct(200).p99Ms,
      errorsAt500: at500.errors,
      sendRateAt500: at500.sendRate,
    };
    console.log(
      `goal (Envoy+EPP at 200/s: ≤ 1 ms p50, ≤ 5 ms p99 over direct; 500/s without errors): ${plus(goal.p50AddedAt200Ms)} ms p50, ${plus(goal.p99AddedAt200Ms)} ms p99, ${goal.errorsAt500} errors at 500/s (sent at ${goal.sendRateAt500.toFixed(0)}/s)`,
    );
    writeResult(options.quick ? 'gateway-quick' : 'gateway', { seconds, rows, goal, envoy: envoyVersion(envoyBin.path), loadAfter: loadavg() });
  } finally {
    await loadgen.stop();
    await envoy?.stop();
    await epp.stop('SIGTERM', 10_000);
    for (const p of pods) await p.proc.stop('SIGTERM', 5_000);
  }
}
