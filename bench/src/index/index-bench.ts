import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { printTable, si, writeResult } from '../harness.js';
import type { IndexSideOptions, IndexSideResult } from './index-side.js';

export interface IndexBenchmarkOptions {
  /** 1 M entries instead of 10 M, so it finishes in under a minute. */
  quick?: boolean;
  /** Print only the summary JSON document (for `kvix bench index --json`). */
  json?: boolean;
  /** Skip the naive baseline (its 10 M-entry build takes a few GiB and a minute). */
  skipBaseline?: boolean;
  /** Index size, overriding quick's 1 M / the default 10 M (small runs check the harness, not the figures). */
  entries?: number;
}

export interface IndexBenchmarkSummary {
  entries: number;
  ingestTokensPerSec: number;
  lookupP50Us: number;
  lookupP99Us: number;
  bytesPerEntry: number;
  /** Baseline lookup+score p50 divided by kvix's (how many times faster kvix answers). */
  baselineRatio: number | null;
  ingestBaselineRatio: number | null;
  memoryBaselineRatio: number | null;
  goals: { ingestTokensPerSec: number; lookupP50Us: number; lookupP99Us: number; bytesPerEntry: number };
  goalsMet: { ingest: boolean; lookupP50: boolean; lookupP99: boolean; bytesPerEntry: boolean };
  kvix: IndexSideResult;
  baseline: IndexSideResult | null;
}

const GOALS = { ingestTokensPerSec: 20e6, lookupP50Us: 15, lookupP99Us: 50, bytesPerEntry: 64 };

function runSide(options: IndexSideOptions): Promise<IndexSideResult> {
  const worker = fileURLToPath(new URL('./worker.js', import.meta.url));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', '--max-old-space-size=20000', worker, JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`index benchmark worker (${options.impl}) exited with ${code}`));
      else resolve(JSON.parse(out.trim().split('\n').pop()!) as IndexSideResult);
    });
  });
}

/** The index benchmark: ingest, lookup+score latency and memory, kvix against the naive baseline. */
export async function runIndexBenchmark(options: IndexBenchmarkOptions = {}): Promise<IndexBenchmarkSummary> {
  const entries = options.entries ?? (options.quick ? 1_000_000 : 10_000_000);
  // 150 prompt families per million entries for the ingest figure (600 at most).
  const ingestFamilies = options.entries === undefined ? (options.quick ? 150 : 600) : Math.min(600, Math.max(10, Math.round((entries / 1_000_000) * 150)));
  const common = { entries, pods: 32, queries: 20_000, ingestFamilies };
  const log = (line: string): void => {
    if (!options.json) console.log(line);
  };
  log(`\nindex: building ${si(entries)} entries over 32 pods (kvix) …`);
  const kvix = await runSide({ ...common, impl: 'kvix' });
  let baseline: IndexSideResult | null = null;
  if (!options.skipBaseline) {
    log('index: the same with the naive Map/Set baseline …');
    baseline = await runSide({ ...common, impl: 'naive' });
  }
  const ratio = (a: number | undefined, b: number): number | null => (a === undefined ? null : a / b);
  const summary: IndexBenchmarkSummary = {
    entries: kvix.entries,
    ingestTokensPerSec: kvix.ingestTokensPerSec,
    lookupP50Us: kvix.lookupP50Us,
    lookupP99Us: kvix.lookupP99Us,
    bytesPerEntry: kvix.bytesPerEntry,
    baselineRatio: ratio(baseline?.lookupP50Us, kvix.lookupP50Us),
    ingestBaselineRatio: baseline ? kvix.ingestTokensPerSec / baseline.ingestTokensPerSec : null,
    memoryBaselineRatio: ratio(baseline?.bytesPerEntry, kvix.bytesPerEntry),
    goals: GOALS,
    goalsMet: {
      ingest: kvix.ingestTokensPerSec >= GOALS.ingestTokensPerSec,
      lookupP50: kvix.lookupP50Us <= GOALS.lookupP50Us,
      lookupP99: kvix.lookupP99Us <= GOALS.lookupP99Us,
      bytesPerEntry: kvix.bytesPerEntry <= GOALS.bytesPerEntry,
    },
    kvix,
    baseline,
  };
  if (options.json) {
    process.stdout.write(`${JSON.stringify(summary)}\n`);
  } else {
    const row = (name: string, k: string, b: string, r: number | null, goal: string): string[] => [name, k, b, r === null ? '' : `${r.toFixed(1)}×`, goal];
    printTable(
      `index: ${si(kvix.entries)} entries, ${si(kvix.keys)} keys (${kvix.podsPerKey.toFixed(2)} pods/key), 32 pods, 128-block prompts of 64 tokens`,
      ['figure', 'kvix', 'naive Map/Set', 'ratio', 'goal'],
      [
        row('(a) ingest tokens/s (applier, rekeying)', si(kvix.ingestTokensPerSec), baseline ? si(baseline.ingestTokensPerSec) : '', summary.ingestBaselineRatio, `≥ ${si(GOALS.ingestTokensPerSec)}`),
        row('(b) lookup+score p50 µs', kvix.lookupP50Us.toFixed(1), baseline ? baseline.lookupP50Us.toFixed(1) : '', summary.baselineRatio, `≤ ${GOALS.lookupP50Us}`),
        row('(b) lookup+score p99 µs', kvix.lookupP99Us.toFixed(1), baseline ? baseline.lookupP99Us.toFixed(1) : '', ratio(baseline?.lookupP99Us, kvix.lookupP99Us), `≤ ${GOALS.lookupP99Us}`),
        row('(c) heap bytes per entry', kvix.bytesPerEntry.toFixed(1), baseline ? baseline.bytesPerEntry.toFixed(1) : '', summary.memoryBaselineRatio, `≤ ${GOALS.bytesPerEntry}`),
        row('build seconds', kvix.buildSeconds.toFixed(1), baseline ? baseline.buildSeconds.toFixed(1) : '', ratio(baseline?.buildSeconds, kvix.buildSeconds), ''),
      ],
    );
    log(`goals: ${Object.entries(summary.goalsMet).map(([k, v]) => `${k} ${v ? 'met' : 'NOT met'}`).join(', ')}`);
    writeResult(options.quick ? 'index-quick' : 'index', { ...summary });
  }
  return summary;
}
