import type * as Bench from '@kvix/bench';
import type { Command } from 'commander';
import { UsageError } from '../io.js';

/**
 * The benchmarks are a development dependency of the CLI: an operator's install has no `bench/`
 * harness (and none of what it pulls in), so it is loaded only when `kvix bench` runs.
 */
async function loadBench(): Promise<typeof Bench> {
  try {
    return await import('@kvix/bench');
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_MODULE_NOT_FOUND' && String((err as Error).message).includes('@kvix/bench')) {
      throw new UsageError('bench: the benchmarks are not installed with the kvix CLI; run them from a kvix checkout (npm ci && npm run bench -- index)');
    }
    throw err;
  }
}

export function registerBench(program: Command): void {
  const bench = program.command('bench').summary('run a kvix benchmark (figures also written to bench/results/)');
  bench
    .command('index')
    .summary('index ingest, lookup+score latency and memory, against a naive Map/Set index')
    .description(
      [
        'Builds an index of 10 M (block, pod) entries over 32 pods (--quick: 1 M, under a minute) and',
        'measures (a) applying BlockStored events with rekeying, in tokens/s, (b) lookup + longest-prefix',
        'scoring of an 8,192-token prompt (128 blocks of 64) against all 32 pods, p50/p99 in µs, and',
        '(c) heap bytes per entry from the process\'s own figures. Each side runs in its own process.',
        'With --json, prints one JSON object: ingestTokensPerSec, lookupP50Us, lookupP99Us, bytesPerEntry,',
        'entries, baselineRatio (naive p50 / kvix p50), and the per-side details.',
      ].join('\n'),
    )
    .option('--quick', 'scale the index down to 1 M entries')
    .option('--entries <n>', 'index size instead (a small one checks the harness, not the figures)')
    .option('--json', 'print one JSON document instead of a table')
    .option('--no-baseline', 'skip the naive baseline')
    .action(async (flags: { quick?: boolean; json?: boolean; baseline: boolean; entries?: string }) => {
      const entries = flags.entries === undefined ? undefined : Number(flags.entries);
      if (entries !== undefined && (!Number.isInteger(entries) || entries < 10_000 || entries > 100_000_000)) throw new UsageError(`bench: --entries must be an integer in [10000, 100000000], got ${flags.entries}`);
      const { runIndexBenchmark } = await loadBench();
      await runIndexBenchmark({ quick: flags.quick === true, json: flags.json === true, skipBaseline: !flags.baseline, ...(entries !== undefined ? { entries } : {}) });
    });
  bench
    .command('decision')
    .summary('routing decision latency, precise beside approximate and round-robin, and precise decisions/s')
    .description(
      [
        'Runs EPPs in this process against 8 synthetic pods per arm whose KV events follow the decisions',
        '(llm-d-shaped multi-turn chat, 2-6 k-token system prompts): decision latency (parse → pick →',
        'hooks) at 40 and 200 req/s with the arms taking turns, each precise stage timed, the stages alone',
        'on one thread (CPU per request), and precise decisions/s at rising rates while p99 <= 5 ms.',
        'With --json, prints one JSON object: preciseP50Ms, preciseP99Ms, approximateP50Ms,',
        'approximateP99Ms, decisionsPerSec (at 40 req/s unless said otherwise), plus phases, stages,',
        'isolated, throughput, ingest and the load average.',
      ].join('\n'),
    )
    .option('--quick', 'shorter phases (about 6 minutes)')
    .option('--json', 'print one JSON document instead of tables')
    .option('--instructions', "only count each stage's instructions under callgrind (needs valgrind; several minutes)")
    .action(async (flags: { quick?: boolean; json?: boolean; instructions?: boolean }) => {
      const { runDecisionBenchmark } = await loadBench();
      await runDecisionBenchmark({ quick: flags.quick === true, json: flags.json === true, instructionsOnly: flags.instructions === true });
    });
}
