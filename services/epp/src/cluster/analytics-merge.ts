import type { ReuseTallies, RoutingTallies, SpeculationTally } from '@kvix/reuse-page';
import { mergeReuseStates, reuseSnapshot, type ReuseState } from '@kvix/scoring';

/** What one routing worker counted, as plain data for the cluster channel: its reuse tallies and its index copy's speculation. */
export interface WorkerAnalytics {
  reuse: ReuseState;
  speculation: SpeculationTally;
}

/** One worker's answer to the primary; `analytics` null when it did not answer in time (or was not running). */
export interface WorkerAnalyticsAnswer {
  /** The worker's id, as the gateway's `x-kvix-worker` header and `/debug/workers` name it. */
  worker: string;
  /** When its process was started (any clock shared by the answers): the longest-running worker's speculation is reported. */
  startedAt: number;
  analytics: WorkerAnalytics | null;
}

const NO_SPECULATION: SpeculationTally = { active: 0, confirmed: 0, expired: 0, byPod: {}, confirmationBuckets: [] };

/**
 * The workers' answers as the tallies one EPP process would have kept. Each worker counts only the
 * requests it routed, so the reuse tallies add up (exact; shared prefixes bounded once a worker's
 * sketch is full, see `mergeReuseStates`). Speculation is the one part not added: every worker's
 * copy of the index holds every worker's speculative entries (its own, and the others' relayed by
 * the primary), so each copy counts the same confirmations and expiries, and a sum would count every
 * decision once per worker. It is read from the longest-running worker that answered (a
 * replacement starts with none of the live speculations and zero totals). A worker that did not
 * answer is named in `workers.missing`, and what it counted is left out.
 */
export function mergeWorkerAnalytics(answers: readonly WorkerAnalyticsAnswer[], topLimit: number, blockSize: number): RoutingTallies {
  const answered = answers.filter((a): a is WorkerAnalyticsAnswer & { analytics: WorkerAnalytics } => a.analytics !== null);
  const merged = mergeReuseStates(
    answered.map((a) => a.analytics.reuse),
    blockSize,
  );
  const eldest = answered.reduce<(typeof answered)[number] | null>((best, a) => (best === null || a.startedAt < best.startedAt ? a : best), null);
  return {
    ...reuseSnapshot(merged, topLimit),
    speculation: eldest?.analytics.speculation ?? NO_SPECULATION,
    workers: { included: answered.map((a) => a.worker), missing: answers.filter((a) => a.analytics === null).map((a) => a.worker) },
  };
}

/**
 * The tallies of every routing worker, as the primary's metrics port serves them (`/v1/analytics`,
 * `/ui` and its history): each snapshot asks the workers (`gather`) and merges their answers.
 */
export class WorkersReuseTallies implements ReuseTallies {
  constructor(
    /** The workers' answers; `prefixes` false lets them leave their shared-prefix sketches out. */
    private readonly gather: (prefixes: boolean) => Promise<WorkerAnalyticsAnswer[]>,
    private readonly blockSize: number,
  ) {}

  async snapshot(topLimit: number): Promise<RoutingTallies> {
    return mergeWorkerAnalytics(await this.gather(topLimit > 0), topLimit, this.blockSize);
  }
}
