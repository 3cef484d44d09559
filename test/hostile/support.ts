/** Helpers shared by the hostile-input suite (the inputs themselves live in @kvix/test-support). */

export { ISSUE_TEMPLATE, LOOPING_TEMPLATE, hostileWord, track, type Tracked } from '@kvix/test-support';

/** The value of one Prometheus sample line (0 when absent). */
export function metric(text: string, series: string): number {
  const escaped = series.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`^${escaped} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}
