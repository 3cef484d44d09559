import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { decodeEventBatch, parseEventMessage } from '@kvix/kv-events';
import { Subscriber } from 'zeromq';
import { printTable, si, writeResult } from './harness.js';

const PODS = 8;
const KVIX = fileURLToPath(new URL('../../packages/cli/bin/kvix.js', import.meta.url));

interface LoadResult {
  concurrency: number;
  seconds: number;
  requests: number;
  errors: number;
  batches: number;
  blocks: number;
  simCpuPercent: number;
}

function cpuOf(pid: number): number {
  // utime + stime in clock ticks, from /proc (Linux): the sim process's own CPU, whatever the load generator costs.
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

async function startSim(basePort: number, baseEventPort: number): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [KVIX, 'sim', '--pods', String(PODS), '--base-port', String(basePort), '--base-event-port', String(baseEventPort), '--time-scale', '1000', '--log-level', 'warn', '--num-gpu-blocks-override', '2048'],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const ok = await Promise.all(Array.from({ length: PODS }, (_, i) => fetch(`http://127.0.0.1:${basePort + i}/health`).then((r) => r.ok)));
      if (ok.every(Boolean)) return child;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error('simulated pods did not start');
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Chat requests: 16 shared system prompts (~600 tokens) and a per-user question. */
function messagesFor(i: number): { role: string; content: string }[] {
  return [
    { role: 'system', content: `System prompt ${i % 16}: you are a helpful assistant for team ${i % 16}. `.repeat(40) },
    { role: 'user', content: `User ${i}: question number ${i} about topic ${(i * 7) % 101}?` },
  ];
}

async function load(basePort: number, concurrency: number, seconds: number, subscribers: { batches: number; blocks: number }, simPid: number): Promise<LoadResult> {
  const counts = { requests: 0, errors: 0 };
  const startBatches = subscribers.batches;
  const startBlocks = subscribers.blocks;
  const cpu0 = cpuOf(simPid);
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      const i = next++;
      try {
        const res = await fetch(`http://127.0.0.1:${basePort + (i % PODS)}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'Qwen/Qwen3-0.6B', messages: messagesFor(i), max_tokens: 8 }),
        });
        await res.arrayBuffer();
        if (res.ok) counts.requests++;
        else counts.errors++;
      } catch {
        counts.errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (performance.now() - t0) / 1000;
  await new Promise((r) => setTimeout(r, 200));
  return {
    concurrency,
    seconds: elapsed,
    requests: counts.requests,
    errors: counts.errors,
    batches: subscribers.batches - startBatches,
    blocks: subscribers.blocks - startBlocks,
    simCpuPercent: ((cpuOf(simPid) - cpu0) / elapsed) * 100,
  };
}

/**
 * How much one simulator process sustains: 8 pods in one process (as `kvix sim --pods 8` runs
 * them), driven over HTTP from this process, every KV event received by real subscribers.
 */
export async function run(): Promise<void> {
  const basePort = 19100;
  const baseEventPort = 19557;
  const sim = await startSim(basePort, baseEventPort);
  const counts = { batches: 0, blocks: 0 };
  const subs: Subscriber[] = [];
  for (let i = 0; i < PODS; i++) {
    const sub = new Subscriber();
    sub.connect(`tcp://127.0.0.1:${baseEventPort + i}`);
    sub.subscribe();
    subs.push(sub);
    void (async () => {
      for await (const frames of sub) {
        const batch = decodeEventBatch(parseEventMessage(frames).payload);
        counts.batches++;
        for (const ev of batch.events) if (ev.type !== 'AllBlocksCleared') counts.blocks += ev.blockHashes.length;
      }
    })().catch(() => undefined);
  }
  await new Promise((r) => setTimeout(r, 500));
  const rows: (string | number)[][] = [];
  const results: LoadResult[] = [];
  try {
    for (const concurrency of [8, 32, 128]) {
      const r = await load(basePort, concurrency, 6, counts, sim.pid!);
      results.push(r);
      rows.push([
        String(concurrency),
        si(r.requests / r.seconds),
        si(r.batches / r.seconds),
        si(r.blocks / r.seconds),
        `${r.simCpuPercent.toFixed(0)}%`,
        String(r.errors),
      ]);
    }
  } finally {
    for (const s of subs) s.close();
    sim.kill('SIGTERM');
  }
  printTable(
    `vllm-sim: ${PODS} pods in one process, chat requests of ~630 tokens (16 shared system prompts), 8 output tokens, time scale 1000`,
    ['concurrency', 'requests/s', 'event batches/s', 'blocks announced/s', 'sim CPU', 'errors'],
    rows,
  );
  console.log('note: the load generator shares this 2-core machine; "sim CPU" is the simulator process alone (100% = one core).');
  writeResult('sim', { pods: PODS, results });
}
