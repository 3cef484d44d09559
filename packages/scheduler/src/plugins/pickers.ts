import type { Candidate, Picker, ScoredCandidate, SchedulingRequest } from '../types.js';

type Random = () => number;

function shuffle<T>(items: T[], random: Random): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/** The highest total score; ties broken at random so equal endpoints share the load. */
export class MaxScorePicker implements Picker {
  readonly kind = 'picker';
  readonly type = 'max-score-picker';
  constructor(
    readonly name: string,
    private readonly random: Random = Math.random,
  ) {}

  pick(_request: SchedulingRequest, scored: readonly ScoredCandidate[], fallbacks: number): Candidate[] {
    return shuffle([...scored], this.random)
      .sort((a, b) => b.score - a.score)
      .slice(0, fallbacks + 1)
      .map((s) => s.candidate);
  }
}

/** Random in proportion to the total score (uniform when every score is 0); fallbacks drawn the same way from the rest. */
export class WeightedRandomPicker implements Picker {
  readonly kind = 'picker';
  readonly type = 'weighted-random-picker';
  constructor(
    readonly name: string,
    private readonly random: Random = Math.random,
  ) {}

  pick(_request: SchedulingRequest, scored: readonly ScoredCandidate[], fallbacks: number): Candidate[] {
    const pool = [...scored];
    const out: Candidate[] = [];
    while (pool.length > 0 && out.length <= fallbacks) {
      const total = pool.reduce((a, s) => a + Math.max(0, s.score), 0);
      let at = 0;
      if (total > 0) {
        let r = this.random() * total;
        while (at < pool.length - 1 && (r -= Math.max(0, pool[at]!.score)) >= 0) at++;
      } else at = Math.floor(this.random() * pool.length);
      out.push(pool.splice(at, 1)[0]!.candidate);
    }
    return out;
  }
}

/** Uniformly random, ignoring scores (a baseline). */
export class RandomPicker implements Picker {
  readonly kind = 'picker';
  readonly type = 'random-picker';
  constructor(
    readonly name: string,
    private readonly random: Random = Math.random,
  ) {}

  pick(_request: SchedulingRequest, scored: readonly ScoredCandidate[], fallbacks: number): Candidate[] {
    return shuffle(
      scored.map((s) => s.candidate),
      this.random,
    ).slice(0, fallbacks + 1);
  }
}

/** Each endpoint in turn, ignoring scores (the round-robin baseline). */
export class RoundRobinPicker implements Picker {
  readonly kind = 'picker';
  readonly type = 'round-robin-picker';
  private next = 0;
  constructor(readonly name: string) {}

  pick(_request: SchedulingRequest, scored: readonly ScoredCandidate[], fallbacks: number): Candidate[] {
    const sorted = scored.map((s) => s.candidate).sort((a, b) => (a.endpoint.id < b.endpoint.id ? -1 : 1));
    if (sorted.length === 0) return [];
    const start = this.next++ % sorted.length;
    return [...sorted.slice(start), ...sorted.slice(0, start)].slice(0, fallbacks + 1);
  }
}
