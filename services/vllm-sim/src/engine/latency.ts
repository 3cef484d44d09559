/**
 * How long an engine step takes, in simulated milliseconds. Shaped like a real GPU: prefill cost
 * grows with the tokens actually computed (cached blocks skip it; blocks loaded from CPU cost a
 * fraction), and a decode step gets slower as the batch grows.
 */
export interface LatencyModel {
  /** Fixed cost of every step (scheduling, sampling, kernel launches). */
  stepOverheadMs: number;
  /** Prefill throughput for uncached prompt tokens. */
  prefillTokensPerSec: number;
  /** Throughput of bringing offloaded (CPU) blocks back; faster than recomputing them. */
  cpuLoadTokensPerSec: number;
  /** A decode step with a batch of one. */
  decodeBaseMs: number;
  /** Added per running sequence in a decode step. */
  decodePerSeqMs: number;
}

/** Roughly an 8B model on one modern GPU. */
export const DEFAULT_LATENCY: LatencyModel = {
  stepOverheadMs: 1.5,
  prefillTokensPerSec: 16_000,
  cpuLoadTokensPerSec: 80_000,
  decodeBaseMs: 12,
  decodePerSeqMs: 0.08,
};

export function stepDurationMs(model: LatencyModel, work: { prefillTokens: number; cpuLoadedTokens: number; decodeSeqs: number }, slowdown = 1): number {
  let ms = model.stepOverheadMs;
  ms += (work.prefillTokens / model.prefillTokensPerSec) * 1000;
  ms += (work.cpuLoadedTokens / model.cpuLoadTokensPerSec) * 1000;
  if (work.decodeSeqs > 0) ms += model.decodeBaseMs + model.decodePerSeqMs * work.decodeSeqs;
  return ms * slowdown;
}
