/**
 * Slot hash for a 64-bit key given as two words. Request and engine keys are already outputs of
 * FNV, XXH64 or SHA-256, so one multiply to mix the halves is enough.
 */
export function hashWords(lo: number, hi: number): number {
  const h = Math.imul(lo ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1);
  return (h ^ (h >>> 16)) >>> 0;
}
