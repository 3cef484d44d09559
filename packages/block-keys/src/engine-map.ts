/**
 * The engine → request key map for one BlockStored event with E engine keys and R request keys
 * (engine and request block sizes may differ). With n = max(E, R), pair i maps
 * engine[floor(i*E/n)] → request[floor(i*R/n)]: 1:1 when sizes match, many:1 when engine blocks
 * are smaller, 1:many when they are larger.
 */
export function forEachEngineRequestPair(
  engineCount: number,
  requestCount: number,
  visit: (engineIndex: number, requestIndex: number) => void,
): void {
  if (engineCount <= 0 || requestCount <= 0) return;
  const n = Math.max(engineCount, requestCount);
  for (let i = 0; i < n; i++) {
    visit(Math.floor((i * engineCount) / n), Math.floor((i * requestCount) / n));
  }
}

/**
 * The index of the last request key mapped to engine key `engineIndex`: the parent request key
 * for an event whose parent is that engine key. -1 when the event produced no request keys.
 */
export function lastRequestIndexForEngine(engineIndex: number, engineCount: number, requestCount: number): number {
  if (engineCount <= 0 || requestCount <= 0 || engineIndex < 0 || engineIndex >= engineCount) return -1;
  const n = Math.max(engineCount, requestCount);
  // The largest i with floor(i*E/n) == engineIndex.
  const last = Math.min(n - 1, Math.ceil(((engineIndex + 1) * n) / engineCount) - 1);
  return Math.floor((last * requestCount) / n);
}

/** All pairs as [engineIndex, requestIndex] tuples (for tests and diagnostics). */
export function engineRequestPairs(engineCount: number, requestCount: number): Array<[number, number]> {
  const pairs: Array<[number, number]> = [];
  forEachEngineRequestPair(engineCount, requestCount, (e, r) => pairs.push([e, r]));
  return pairs;
}
