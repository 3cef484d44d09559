import type { Candidate, Filter, SchedulingRequest } from '../../types.js';
import { latencyCycle } from './cycle.js';

/**
 * llm-d's SLO headroom tier filter: keeps the candidates predicted to meet the request's SLO,
 * except for a small share of requests (`epsilonExploreNeg`) that go to the other tier so pods
 * recovering from overload get traffic and fresh observations. Without predictions (no SLO, or
 * the predictor could not answer) every candidate passes.
 */
export class SloHeadroomTierFilter implements Filter {
  readonly kind = 'filter';
  readonly type = 'slo-headroom-tier-filter';

  constructor(
    readonly name: string,
    private readonly epsilonExploreNeg: number,
    private readonly random: () => number = Math.random,
  ) {}

  filter(request: SchedulingRequest, candidates: readonly Candidate[]): readonly Candidate[] {
    const cycle = latencyCycle(request);
    if (cycle?.status !== 'predicted') return candidates;
    const positive: Candidate[] = [];
    const negative: Candidate[] = [];
    for (const c of candidates) {
      const p = cycle.predictions.get(c.endpoint.id);
      (p && p.ttftValid && p.tpotValid ? positive : negative).push(c);
    }
    if (positive.length === 0 || negative.length === 0) return candidates;
    return this.random() < this.epsilonExploreNeg ? negative : positive;
  }
}
