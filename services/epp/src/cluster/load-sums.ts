import type { TokensInFlight } from './messages.js';

/**
 * Requests in flight per endpoint, summed over several processes' reports. A report came over a
 * channel: a count that is not a positive number adds nothing.
 */
export function sumCounts(reports: Iterable<Record<string, number>>): Map<string, number> {
  const sum = new Map<string, number>();
  for (const report of reports) {
    for (const [id, n] of Object.entries(report)) if (Number.isFinite(n) && n > 0) sum.set(id, (sum.get(id) ?? 0) + n);
  }
  return sum;
}

/** Tokens in flight per endpoint, summed over several processes' reports (the same rule per field). */
export function sumTokens(reports: Iterable<Record<string, TokensInFlight>>): Map<string, TokensInFlight> {
  const sum = new Map<string, TokensInFlight>();
  for (const report of reports) {
    for (const [id, { prefill, decode }] of Object.entries(report)) {
      const s = sum.get(id) ?? { prefill: 0, decode: 0 };
      if (Number.isFinite(prefill) && prefill > 0) s.prefill += prefill;
      if (Number.isFinite(decode) && decode > 0) s.decode += decode;
      sum.set(id, s);
    }
  }
  return sum;
}
