import { runDecisionBenchmark } from './decision/decision-bench.js';
import { run as eventDecode } from './event-decode.js';
import { runIndexBenchmark } from './index/index-bench.js';
import { runRedisIndexBenchmark } from './index/redis-lookup.js';
import { runRedisMixedBenchmark } from './index/redis-mixed.js';
import { runIndexPeersBenchmark } from './index-peers/index-peers-bench.js';
import { runGatewayBenchmark } from './gateway/gateway-bench.js';
import { runIngestBenchmark } from './ingest/ingest-bench.js';
import { runLatencyBenchmark } from './latency/latency-bench.js';
import { runScoringBenchmark } from './scoring/scoring-bench.js';
import { run as requestKeys } from './request-keys.js';
import { runReplicationBenchmark } from './replication/replication-bench.js';
import { runRoutingBenchmark, type WorkloadName } from './routing/routing-bench.js';
import { run as sim } from './sim.js';
import { run as tokenize } from './tokenize-bench.js';
import { run as tracing } from './tracing-bench.js';
import { runWorkersBenchmark } from './workers/workers-bench.js';
import { machine } from './harness.js';

/** Every benchmark by name; `npm run bench -- <name…>` runs a subset. */
const BENCHMARKS: Record<string, () => void | Promise<void>> = {
  'request-keys': requestKeys,
  'event-decode': eventDecode,
  sim,
  index: async () => {
    await runIndexBenchmark({ quick: process.env['KVIX_BENCH_QUICK'] === '1' });
  },
  'index-peers': () => runIndexPeersBenchmark(),
  'redis-index': () => runRedisIndexBenchmark({ quick: process.env['KVIX_BENCH_QUICK'] === '1' || process.argv.includes('--quick') }),
  'redis-mixed': () => runRedisMixedBenchmark({ quick: process.env['KVIX_BENCH_QUICK'] === '1' || process.argv.includes('--quick') }),
  ingest: () => runIngestBenchmark({ quick: process.env['KVIX_BENCH_QUICK'] === '1' }),
  scoring: () => runScoringBenchmark({ quick: process.env['KVIX_BENCH_QUICK'] === '1' }),
  tokenize,
  replication: () => runReplicationBenchmark({ quick: process.env['KVIX_BENCH_QUICK'] === '1' || process.argv.includes('--quick') }),
  'latency-predictor': () => runLatencyBenchmark({ quick: process.env['KVIX_BENCH_QUICK'] === '1' || process.argv.includes('--quick') }),
  decision: async () => {
    await runDecisionBenchmark({ quick: quickFlag, profileOnly: process.argv.includes('--profile'), instructionsOnly: process.argv.includes('--instructions') });
  },
  tracing,
  routing: () => runRoutingBenchmark({ quick: quickFlag, ...routingOptions() }),
  gateway: () => runGatewayBenchmark({ quick: quickFlag }),
  workers: () => runWorkersBenchmark({ quick: quickFlag }),
};

/** `--repeat N`, `--sweep`, `--workload chat|trace|all` (routing). */
function routingOptions(): { repeat?: number; sweep?: boolean; workloads?: WorkloadName[] } {
  const out: { repeat?: number; sweep?: boolean; workloads?: WorkloadName[] } = {};
  const repeat = valueOf('--repeat');
  if (repeat !== undefined) {
    const n = Number(repeat);
    if (!Number.isInteger(n) || n < 1) usage(`--repeat takes a whole number ≥ 1, not ${repeat}`);
    out.repeat = n;
  }
  if (process.argv.includes('--sweep')) out.sweep = true;
  const workload = valueOf('--workload');
  if (workload !== undefined) {
    if (!['chat', 'trace', 'all'].includes(workload)) usage(`--workload takes chat, trace or all, not ${workload}`);
    out.workloads = workload === 'all' ? ['chat', 'trace'] : [workload as WorkloadName];
  }
  return out;
}

function valueOf(flag: string): string | undefined {
  const at = process.argv.indexOf(flag);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

function usage(message: string): never {
  console.error(message);
  process.exit(2);
}

const quickFlag = process.env['KVIX_BENCH_QUICK'] === '1' || process.argv.includes('--quick');
const FLAGS = new Set(['--quick', '--profile', '--instructions', '--sweep']);
const VALUED = new Set(['--repeat', '--workload']);
const wanted = process.argv.slice(2).filter((a, i, all) => !FLAGS.has(a) && !VALUED.has(a) && !VALUED.has(all[i - 1] ?? ''));
const unknown = wanted.filter((n) => !(n in BENCHMARKS));
if (unknown.length > 0) {
  console.error(`unknown benchmark(s): ${unknown.join(', ')}; available: ${Object.keys(BENCHMARKS).join(', ')}`);
  process.exit(2);
}
console.log(`kvix benchmarks on ${JSON.stringify(machine())}`);
for (const [name, bench] of Object.entries(BENCHMARKS)) {
  if (wanted.length > 0 && !wanted.includes(name)) continue;
  await bench();
}
