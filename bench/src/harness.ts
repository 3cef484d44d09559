import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';

/** What a result file records about where it was measured: figures mean little without it. */
export function machine(): Record<string, string | number> {
  const cpu = cpus();
  return {
    cpu: cpu[0]?.model ?? 'unknown',
    cores: cpu.length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
  };
}

export interface Sample {
  /** Units of work per second (tokens, blocks, …) for each repetition. */
  rates: number[];
  median: number;
  min: number;
  max: number;
}

/**
 * Runs `work` (which performs `unitsPerCall` units) repeatedly: a warm-up so the JIT settles, then
 * `repetitions` timed rounds of at least `roundMs` each. Reports units/s per round; the median is
 * the figure, the spread shows how noisy the machine was.
 */
export function measure(work: () => void, unitsPerCall: number, { repetitions = 7, roundMs = 300, warmupMs = 300 } = {}): Sample {
  const warmEnd = performance.now() + warmupMs;
  while (performance.now() < warmEnd) work();
  const rates: number[] = [];
  for (let r = 0; r < repetitions; r++) {
    let calls = 0;
    const start = process.hrtime.bigint();
    const deadline = performance.now() + roundMs;
    do {
      work();
      calls++;
    } while (performance.now() < deadline);
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    rates.push((calls * unitsPerCall) / seconds);
  }
  const sorted = [...rates].sort((a, b) => a - b);
  return { rates, median: sorted[Math.floor(sorted.length / 2)]!, min: sorted[0]!, max: sorted[sorted.length - 1]! };
}

/** Compact human figure: 41.2 M, 3.05 k … */
export function si(v: number): string {
  if (v >= 1e9) return `${(v / 1e9).toFixed(2)} G`;
  if (v >= 1e6) return `${(v / 1e6).toFixed(2)} M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(2)} k`;
  return v.toFixed(2);
}

export function printTable(title: string, header: string[], rows: (string | number)[][]): void {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, c) => Math.max(...cells.map((row) => row[c]!.length)));
  console.log(`\n${title}`);
  for (const [i, row] of cells.entries()) {
    console.log(row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  '));
    if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
}

/** Writes bench/results/<name>.json with the machine it ran on. */
export function writeResult(name: string, result: Record<string, unknown>): void {
  const dir = new URL('../results/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  const doc = { name, date: new Date().toISOString(), machine: machine(), ...result };
  writeFileSync(new URL(`${name}.json`, dir), `${JSON.stringify(doc, null, 2)}\n`);
  console.log(`→ bench/results/${name}.json`);
}

/** Deterministic pseudo-random numbers so every run hashes the same data. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}
