/** Helpers shared by the hostile-input suite. */

/** A request's outcome, and whether it had settled yet: tests assert what finished first, never how long it took. */
export interface Tracked<T> {
  readonly settled: boolean;
  readonly result: Promise<PromiseSettledResult<T>>;
}

export function track<T>(promise: Promise<T>): Tracked<T> {
  const state = { settled: false };
  const result = Promise.allSettled([promise]).then(([r]) => {
    state.settled = true;
    return r!;
  });
  return {
    get settled() {
      return state.settled;
    },
    result,
  };
}

/** The request from issue 16: 30 M loop iterations (and a 30 M-item range) before "hello". */
export const ISSUE_TEMPLATE = '{% for i in range(30000000) %}{% endfor %}hello';
/** Within Jinja2's sandbox range limit, but 10^10 iterations: only a clock stops it. */
export const LOOPING_TEMPLATE = '{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}hello';

/** The value of one Prometheus sample line (0 when absent). */
export function metric(text: string, series: string): number {
  const escaped = series.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`^${escaped} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}
