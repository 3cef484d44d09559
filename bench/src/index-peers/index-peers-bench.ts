import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { homedir, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { printTable, si, writeResult } from '../harness.js';
import { distinctKeys, generatePeersWorkload, ISSUE_22_WORKLOAD } from './generate.js';
import type { ArmResult } from './node-arms.js';
import { writeWorkload } from './workload-file.js';

/**
 * `npm run bench -- index-peers`: kvix's in-memory index against the naive Map/Set index and
 * NVIDIA Dynamo's single-threaded RadixTree (crate dynamo-kv-router, built from bench/dynamo-radix
 * with cargo), on one seeded workload file all arms read. Every arm runs in its own process, three
 * rounds in rotating order, so a busy machine slows each arm alike; figures are medians with the
 * spread, and ratios are taken within the run.
 */
export interface IndexPeersOptions {
  rounds?: number;
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CRATE_DIR = join(ROOT, 'dynamo-radix');
const BINARY = join(CRATE_DIR, 'target', 'release', 'kvix-bench-dynamo-radix');

function findCargo(): string | null {
  for (const candidate of ['cargo', join(homedir(), '.cargo', 'bin', 'cargo')]) {
    const r = spawnSync(candidate, ['--version'], { encoding: 'utf8' });
    if (r.status === 0) return candidate;
  }
  return null;
}

/** Builds the Dynamo arm (a no-op when it is up to date); null with the reason when it cannot. */
function buildDynamoArm(): { binary: string } | { skipped: string } {
  const cargo = findCargo();
  if (cargo === null) return { skipped: 'cargo is not installed: the Dynamo RadixTree arm is skipped' };
  console.log(`index-peers: building the Dynamo arm with ${cargo} (crate dynamo-kv-router =1.6.1; the first build takes ~10 minutes) …`);
  const r = spawnSync(cargo, ['build', '--release', '--quiet', '--manifest-path', join(CRATE_DIR, 'Cargo.toml')], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0 || !existsSync(BINARY)) return { skipped: `cargo build of bench/dynamo-radix failed (exit ${r.status}): the Dynamo arm is skipped` };
  return { binary: BINARY };
}

function runArm(arm: string, workload: string, binary: string | null): Promise<ArmResult> {
  const [command, args] =
    arm === 'dynamo'
      ? [binary!, [workload]]
      : [process.execPath, ['--expose-gc', '--max-old-space-size=8000', fileURLToPath(new URL('./worker.js', import.meta.url)), arm, workload]];
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`index-peers arm ${arm} exited with ${code}`));
      else resolve(JSON.parse(out.trim().split('\n').pop()!) as ArmResult);
    });
  });
}

interface Spread {
  median: number;
  min: number;
  max: number;
}

function spread(xs: number[]): Spread {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)]!, min: s[0]!, max: s[s.length - 1]! };
}

export async function runIndexPeersBenchmark(options: IndexPeersOptions = {}): Promise<void> {
  const rounds = options.rounds ?? 3;
  const dir = join(ROOT, 'results');
  mkdirSync(dir, { recursive: true });
  const workloadPath = join(dir, 'index-peers.workload');
  console.log('\nindex-peers: generating the workload (seeded) …');
  const w = generatePeersWorkload(ISSUE_22_WORKLOAD);
  writeWorkload(workloadPath, w);
  const keys = distinctKeys(w);
  console.log(`index-peers: ${si(w.blockEngine.length)} (key, pod) entries on ${si(keys)} keys over ${w.pods} pods, ${w.storePod.length} stores of ≤ ${ISSUE_22_WORKLOAD.maxEventBlocks} blocks, ${w.lookupOffset.length - 1} lookups of ${ISSUE_22_WORKLOAD.promptBlocks} keys`);

  const dynamo = buildDynamoArm();
  if ('skipped' in dynamo) console.log(`index-peers: ${dynamo.skipped}`);
  const ref = process.env['KVIX_PEERS_REF'];
  if (ref) console.log(`index-peers: arm "ref" is kvix's index from ${ref}`);
  const arms = ['kvix', ...(ref ? ['ref'] : []), 'naive', ...('binary' in dynamo ? ['dynamo'] : [])];
  const results = new Map<string, ArmResult[]>(arms.map((a) => [a, []]));
  const loads: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const order = arms.map((_, k) => arms[(k + round) % arms.length]!);
    for (const arm of order) {
      loads.push(loadavg()[0]!);
      const r = await runArm(arm, workloadPath, 'binary' in dynamo ? dynamo.binary : null);
      if (r.depthSum !== r.expectedDepthSum || r.maxDepthSum !== r.expectedMaxDepthSum) {
        throw new Error(`index-peers: arm ${arm} matched ${r.depthSum} pod-blocks (deepest ${r.maxDepthSum}); the workload says ${r.expectedDepthSum} (${r.expectedMaxDepthSum})`);
      }
      results.get(arm)!.push(r);
      console.log(`  round ${round + 1} ${arm.padEnd(6)} insert ${si(r.insertBlocksPerSec)} blocks/s, lookup p50 ${r.lookupP50Us.toFixed(2)} µs p99 ${r.lookupP99Us.toFixed(2)} µs, ${r.bytesPerEntry.toFixed(1)} bytes/entry (load ${loads.at(-1)!.toFixed(1)})`);
    }
  }
  loads.push(loadavg()[0]!);

  const fig = (arm: string, f: (r: ArmResult) => number): Spread | null => (results.has(arm) ? spread(results.get(arm)!.map(f)) : null);
  const show = (s: Spread | null, digits: number, unit = ''): string => (s === null ? 'skipped' : `${fmt(s.median, digits)}${unit} (${fmt(s.min, digits)}–${fmt(s.max, digits)})`);
  const fmt = (v: number, digits: number): string => (v >= 1e5 ? si(v) : v.toFixed(digits));
  const ratio = (a: Spread | null, b: Spread | null, higherIsBetter: boolean): string => {
    if (a === null || b === null) return '';
    const r = higherIsBetter ? a.median / b.median : b.median / a.median;
    return `${r.toFixed(2)}×`;
  };
  const rows: [string, (r: ArmResult) => number, number, boolean][] = [
    ['insert, blocks/s (wall)', (r) => r.insertBlocksPerSec, 0, true],
    ['insert, blocks per CPU-second', (r) => r.insertBlocksPerCpuSec, 0, true],
    ['lookup p50, µs', (r) => r.lookupP50Us, 2, false],
    ['lookup p99, µs', (r) => r.lookupP99Us, 2, false],
    ['lookup mean, µs', (r) => r.lookupMeanUs, 2, false],
    ['bytes per entry', (r) => r.bytesPerEntry, 1, false],
  ];
  const table = rows.map(([name, f, digits, higher]) => {
    const k = fig('kvix', f);
    const cells = arms.map((arm) => show(fig(arm, f), digits));
    const ratios = arms.filter((arm) => arm !== 'kvix').map((arm) => ratio(k, fig(arm, f), higher));
    return [name, ...cells, ...ratios];
  });
  const label: Record<string, string> = { kvix: 'kvix', ref: 'kvix (ref)', naive: 'naive Map/Set', dynamo: 'Dynamo RadixTree' };
  printTable(
    `index-peers: medians of ${rounds} rounds (min–max); ratios are kvix's advantage (> 1: kvix better); load ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}`,
    ['figure', ...arms.map((a) => label[a]!), ...arms.filter((a) => a !== 'kvix').map((a) => `kvix vs ${label[a]!}`)],
    table,
  );
  const kv = results.get('kvix')!;
  console.log(
    `kvix, as PodScore objects (matchPrefix + prefixScores): p50 ${show(spread(kv.map((r) => r.scoresP50Us!)), 2)} µs, p99 ${show(spread(kv.map((r) => r.scoresP99Us!)), 2)} µs; ` +
      `per-key lookup + scoreLookup: p50 ${show(spread(kv.map((r) => r.perKeyLookupP50Us!)), 2)} µs, p99 ${show(spread(kv.map((r) => r.perKeyLookupP99Us!)), 2)} µs`,
  );
  writeResult('index-peers', {
    workload: { ...ISSUE_22_WORKLOAD, keys, stores: w.storePod.length, blocks: w.blockEngine.length, expectedDepthSum: w.expectedDepthSum, expectedMaxDepthSum: w.expectedMaxDepthSum },
    dynamo: 'binary' in dynamo ? 'dynamo-kv-router 1.6.1, RadixTree::find_matches(early_exit=false), apply_event' : dynamo.skipped,
    ...(ref ? { ref } : {}),
    loadAverage: { min: Math.min(...loads), max: Math.max(...loads), samples: loads },
    rounds: Object.fromEntries(results),
  });
}
