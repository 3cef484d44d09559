import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const KVIX = fileURLToPath(new URL('../../../packages/cli/bin/kvix.js', import.meta.url));

export interface FleetSpec {
  pods: number;
  basePort: number;
  baseEventPort: number;
  /** Simulated seconds per real second. */
  timeScale: number;
  numGpuBlocks: number;
  blockSize: number;
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
  /** Latency model (simulated ms / tokens per simulated second); the simulator's defaults when left out. */
  latency: { stepOverheadMs?: number; prefillTokensPerSec?: number; decodeBaseMs?: number; decodePerSeqMs?: number };
}

/** Per-pod totals read from /metrics (vLLM's counters, in tokens). */
export interface PodCounters {
  prefixQueries: number;
  prefixHits: number;
  promptTokens: number;
  generationTokens: number;
  preemptions: number;
  /** Cumulative TTFT histogram: upper bound (s) → count, as the engine measured it in simulated time. */
  ttftBuckets: Map<number, number>;
  ttftCount: number;
}

/**
 * `kvix sim --pods N` in a child process, so the simulated GPUs never wait on the router's event
 * loop (or it on theirs); it writes the endpoints file the EPP discovers the pods from.
 */
export class SimFleetProcess {
  private constructor(
    readonly spec: FleetSpec,
    private readonly child: ChildProcess,
    readonly endpointsFile: string,
    private readonly dir: string,
  ) {}

  static async start(spec: FleetSpec): Promise<SimFleetProcess> {
    const dir = mkdtempSync(join(tmpdir(), 'kvix-routing-'));
    const endpointsFile = join(dir, 'endpoints.yaml');
    const l = spec.latency;
    const args = [
      KVIX, 'sim',
      '--pods', String(spec.pods),
      '--base-port', String(spec.basePort),
      '--base-event-port', String(spec.baseEventPort),
      '--time-scale', String(spec.timeScale),
      '--num-gpu-blocks-override', String(spec.numGpuBlocks),
      '--block-size', String(spec.blockSize),
      '--max-num-seqs', String(spec.maxNumSeqs),
      '--max-num-batched-tokens', String(spec.maxNumBatchedTokens),
      '--kv-offload', 'none',
      '--write-endpoints', endpointsFile,
      '--log-level', 'warn',
      ...(l.stepOverheadMs !== undefined ? ['--step-overhead-ms', String(l.stepOverheadMs)] : []),
      ...(l.prefillTokensPerSec !== undefined ? ['--prefill-tokens-per-sec', String(l.prefillTokensPerSec)] : []),
      ...(l.decodeBaseMs !== undefined ? ['--decode-base-ms', String(l.decodeBaseMs)] : []),
      ...(l.decodePerSeqMs !== undefined ? ['--decode-per-seq-ms', String(l.decodePerSeqMs)] : []),
    ];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
    const fleet = new SimFleetProcess(spec, child, endpointsFile, dir);
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`kvix sim exited with code ${child.exitCode}`);
      try {
        const ok = await Promise.all(fleet.urls().map((u) => fetch(`${u}/health`).then((r) => r.ok)));
        if (ok.every(Boolean)) return fleet;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        await fleet.stop();
        throw new Error('the simulated pods did not start within 60 s');
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  urls(): string[] {
    return Array.from({ length: this.spec.pods }, (_, i) => `http://127.0.0.1:${this.spec.basePort + i}`);
  }

  /**
   * Empties every pod's prefix cache (vLLM answers success: false while a request holds blocks,
   * so it is retried), then checks each pod reports no cached block.
   */
  async resetPrefixCaches(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    await Promise.all(
      this.urls().map(async (url) => {
        for (;;) {
          const res = await fetch(`${url}/reset_prefix_cache`, { method: 'POST' });
          const body = (await res.json()) as { success?: boolean };
          if (res.ok && body.success === true) break;
          if (Date.now() > deadline) throw new Error(`${url} would not reset its prefix cache`);
          await new Promise((r) => setTimeout(r, 200));
        }
        const state = (await (await fetch(`${url}/sim/state`)).json()) as { cachedBlocks: number; running: number; waiting: number };
        if (state.cachedBlocks !== 0 || state.running !== 0 || state.waiting !== 0) throw new Error(`${url} still holds ${state.cachedBlocks} cached blocks after a reset`);
      }),
    );
  }

  async counters(): Promise<PodCounters[]> {
    return Promise.all(this.urls().map(async (url) => parseCounters(await (await fetch(`${url}/metrics`)).text())));
  }

  /** The simulator's own CPU seconds (user + system), from /proc. */
  cpuSeconds(): number {
    return procCpuSeconds(this.pid);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null) {
      const exited = new Promise((r) => this.child.once('exit', r));
      this.child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (this.child.exitCode === null) this.child.kill('SIGKILL');
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function procCpuSeconds(pid: number): number {
  try {
    // utime and stime, in clock ticks (100 per second on Linux).
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

function parseCounters(text: string): PodCounters {
  const out: PodCounters = { prefixQueries: 0, prefixHits: 0, promptTokens: 0, generationTokens: 0, preemptions: 0, ttftBuckets: new Map(), ttftCount: 0 };
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line === '') continue;
    const space = line.lastIndexOf(' ');
    const value = Number(line.slice(space + 1));
    const series = line.slice(0, space);
    const name = series.split('{')[0]!;
    switch (name) {
      case 'vllm:prefix_cache_queries_total':
        out.prefixQueries += value;
        break;
      case 'vllm:prefix_cache_hits_total':
        out.prefixHits += value;
        break;
      case 'vllm:prompt_tokens_total':
        out.promptTokens += value;
        break;
      case 'vllm:generation_tokens_total':
        out.generationTokens += value;
        break;
      case 'vllm:num_preemptions_total':
        out.preemptions += value;
        break;
      case 'vllm:time_to_first_token_seconds_bucket': {
        const le = /le="([^"]+)"/.exec(series)?.[1];
        if (le === undefined) break;
        const bound = le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le);
        out.ttftBuckets.set(bound, (out.ttftBuckets.get(bound) ?? 0) + value);
        break;
      }
      case 'vllm:time_to_first_token_seconds_count':
        out.ttftCount += value;
        break;
    }
  }
  return out;
}
