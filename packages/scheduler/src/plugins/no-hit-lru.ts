import type { Candidate, PreRequestHook, SchedulingRequest, SchedulingResult, Scorer, Scores } from '../types.js';
import { PREFIX_MATCH, type PrefixMatch } from './prefix-match.js';

const COLD = 'no-hit-lru-cold';

/**
 * Spreads cold requests (no candidate holds any of the prompt) over endpoints, least recently
 * given a cold request first, so new prefixes grow caches evenly; neutral 0.5 for warm requests.
 * Endpoints never given a cold request rank before all others.
 */
export class NoHitLruScorer implements Scorer, PreRequestHook {
  readonly kind = 'scorer';
  readonly type = 'no-hit-lru-scorer';
  /** Endpoint ids, least recently given a cold request first. */
  private readonly lru = new Map<string, true>();

  constructor(
    readonly name: string,
    private readonly capacity = 1024,
  ) {}

  score(request: SchedulingRequest, candidates: readonly Candidate[]): Scores {
    const match = request.cycle.get(PREFIX_MATCH) as PrefixMatch | undefined;
    const cold = match?.cold ?? true;
    request.cycle.set(COLD, cold);
    if (!cold) return new Map(candidates.map((c) => [c.endpoint.id, 0.5]));
    if (candidates.length === 1) return new Map([[candidates[0]!.endpoint.id, 1]]);
    const order = [...this.lru.keys()];
    const position = new Map(order.map((id, i) => [id, i]));
    const never = candidates.filter((c) => !position.has(c.endpoint.id));
    const used = candidates.filter((c) => position.has(c.endpoint.id)).sort((a, b) => position.get(a.endpoint.id)! - position.get(b.endpoint.id)!);
    const out: Scores = new Map();
    const denom = candidates.length - 1;
    [...never, ...used].forEach((c, rank) => out.set(c.endpoint.id, Math.max(0, 1 - rank / denom)));
    return out;
  }

  preRequest(request: SchedulingRequest, result: SchedulingResult): void {
    const chosen = result.endpoints[0];
    if (!chosen || request.cycle.get(COLD) !== true) return;
    this.lru.delete(chosen.id);
    this.lru.set(chosen.id, true);
    if (this.lru.size > this.capacity) this.lru.delete(this.lru.keys().next().value as string);
  }
}
