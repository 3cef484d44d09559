/** Inputs that once hung or exhausted a service (issue 16), and a way to see which request settled first. */

/** The request from issue 16: 30 M loop iterations (and a 30 M-item range) before "hello". */
export const ISSUE_TEMPLATE = '{% for i in range(30000000) %}{% endfor %}hello';
/** Within Jinja2's sandbox range limit, but 10^10 iterations: only a clock stops it. */
export const LOOPING_TEMPLATE = '{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}hello';

/**
 * One "word" of `chars` pseudo-random letters: BPE merges it slower than linearly and no word cache
 * helps (900 k characters: ~5.5 s on an idle 2-core machine), so a tokenization deadline of a fraction
 * of a second, scaled for the machine's load, always passes first. Repeated prose ('lorem ipsum' ×
 * 40,000) tokenizes in ~20 ms once the tokenizer's word cache is warm: too fast to outlive one.
 */
export function hostileWord(chars: number, seed = 1): string {
  let x = seed;
  const letters = new Array<string>(chars);
  for (let i = 0; i < chars; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    letters[i] = String.fromCharCode(97 + ((x >>> 16) % 26));
  }
  return letters.join('');
}

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
