import type { PredictionRow } from '@kvix/latency-predictor';
import type { SchedulingRequest } from '../../types.js';

/** Request headers carrying the latency SLOs, in ms (llm-d's names; the older names still work). */
export const TTFT_SLO_HEADERS = ['x-llm-d-slo-ttft-ms', 'x-slo-ttft-ms'] as const;
export const TPOT_SLO_HEADERS = ['x-llm-d-slo-tpot-ms', 'x-slo-tpot-ms'] as const;

/** One candidate's predicted latencies against the request's SLOs (llm-d's LatencyPredictionInfo). */
export interface EndpointLatency {
  ttftMs: number;
  tpotMs: number;
  /** SLO − predicted; negative means the SLO is predicted to be missed. Without an SLO: −predicted. */
  ttftHeadroom: number;
  tpotHeadroom: number;
  ttftValid: boolean;
  tpotValid: boolean;
  /** Requests this router has dispatched there and not seen finish. */
  dispatched: number;
}

export interface LatencyCycle {
  /** 0 when the request set none. */
  ttftSloMs: number;
  tpotSloMs: number;
  /**
   * predicted: every candidate has a prediction; skipped: no SLO header and predictions are only
   * made for SLO requests; unavailable: the predictor could not answer (not trained yet, down).
   */
  status: 'predicted' | 'skipped' | 'unavailable';
  predictions: Map<string, EndpointLatency>;
  /** Each candidate's feature row: predictions were made from it, and the chosen pod's becomes a training entry. */
  rows: Map<string, PredictionRow>;
}

export const LATENCY_CYCLE = 'latency-predictions';

export function latencyCycle(request: SchedulingRequest): LatencyCycle | undefined {
  return request.cycle.get(LATENCY_CYCLE) as LatencyCycle | undefined;
}

/** The first of the headers set to a positive number of ms; 0 when none is (a malformed value counts as unset). */
export function sloHeader(headers: Readonly<Record<string, string>>, names: readonly string[]): number {
  for (const name of names) {
    const raw = headers[name];
    if (raw === undefined || raw.trim() === '') continue;
    const v = Number(raw);
    return Number.isFinite(v) && v > 0 ? v : 0;
  }
  return 0;
}
