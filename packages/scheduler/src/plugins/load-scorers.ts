import type { Candidate, Scorer, Scores } from '../types.js';

/**
 * Shorter waiting queues score higher: (maxQ − q) / (maxQ − minQ) over the candidates, 1 for all
 * when the queues are equal. q is the pod's reported waiting count; with `countInFlight`, the
 * requests this router has in flight there beyond what the pod reported running count too, so a
 * burst is seen before the next scrape (at the price of counting requests the scrape has not
 * caught up with as queued).
 */
export class QueueScorer implements Scorer {
  readonly kind = 'scorer';
  readonly type = 'queue-scorer';
  constructor(
    readonly name: string,
    private readonly countInFlight = true,
  ) {}

  score(_request: unknown, candidates: readonly Candidate[]): Scores {
    const q = candidates.map((c) => {
      const waiting = c.metrics?.waiting ?? 0;
      return this.countInFlight ? Math.max(waiting, c.inFlight - (c.metrics?.running ?? 0)) : waiting;
    });
    const min = Math.min(...q);
    const max = Math.max(...q);
    const out: Scores = new Map();
    candidates.forEach((c, i) => out.set(c.endpoint.id, max === min ? 1 : (max - q[i]!) / (max - min)));
    return out;
  }
}

/** A fuller KV cache scores lower: 1 − utilisation. */
export class KvCacheUtilizationScorer implements Scorer {
  readonly kind = 'scorer';
  readonly type = 'kv-cache-utilization-scorer';
  constructor(readonly name: string) {}

  score(_request: unknown, candidates: readonly Candidate[]): Scores {
    return new Map(candidates.map((c) => [c.endpoint.id, 1 - Math.min(1, Math.max(0, c.metrics?.kvUsage ?? 0))]));
  }
}

/**
 * Fewer requests in flight from this router scores higher (it sees them before the pod's metrics
 * do): idle endpoints 1, busy ones (max − n) / max × maxBusyScore.
 */
export class ActiveRequestScorer implements Scorer {
  readonly kind = 'scorer';
  readonly type = 'active-request-scorer';
  constructor(
    readonly name: string,
    private readonly idleThreshold = 0,
    private readonly maxBusyScore = 1,
  ) {}

  score(_request: unknown, candidates: readonly Candidate[]): Scores {
    const max = Math.max(0, ...candidates.map((c) => c.inFlight));
    return new Map(candidates.map((c) => [c.endpoint.id, c.inFlight <= this.idleThreshold || max === 0 ? 1 : ((max - c.inFlight) / max) * this.maxBusyScore]));
  }
}
