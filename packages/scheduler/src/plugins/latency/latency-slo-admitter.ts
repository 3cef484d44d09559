import type { AdmissionDenial, Admitter, Candidate, SchedulingRequest } from '../../types.js';
import { latencyCycle } from './cycle.js';

/** llm-d's dropped reason for shedding (x-llm-d-request-dropped-reason), the saturation shed's too. */
const DROPPED_REASON_SATURATED = 'rejected-saturated';

/** Below this KV utilisation a pod is cold: its predictions are not trusted enough to shed on. */
const COLD_KV = 0.02;

/**
 * llm-d's latency SLO admitter: a sheddable request (priority < 0) carrying an SLO is refused
 * with 429 when no candidate is predicted to meet the SLO, none is idle and none is cold. Others
 * are always admitted, and so is everything when there are no predictions (fail open).
 */
export class LatencySloAdmitter implements Admitter {
  readonly kind = 'admitter';
  readonly type = 'latency-slo-admitter';

  constructor(readonly name: string) {}

  admit(request: SchedulingRequest, candidates: readonly Candidate[]): AdmissionDenial | null {
    if ((request.priority ?? 0) >= 0) return null;
    const cycle = latencyCycle(request);
    if (!cycle || cycle.status !== 'predicted' || (cycle.ttftSloMs <= 0 && cycle.tpotSloMs <= 0)) return null;
    for (const c of candidates) {
      const p = cycle.predictions.get(c.endpoint.id);
      if (p && p.ttftValid && p.tpotValid) return null;
      if ((c.metrics?.running ?? 0) === 0 && c.inFlight === 0) return null;
      if ((c.metrics?.kvUsage ?? 0) < COLD_KV) return null;
    }
    return {
      status: 429,
      code: 'SLO_UNATTAINABLE',
      message: `no endpoint is predicted to meet the request's latency SLO (${[cycle.ttftSloMs > 0 ? `TTFT ${cycle.ttftSloMs} ms` : '', cycle.tpotSloMs > 0 ? `TPOT ${cycle.tpotSloMs} ms` : ''].filter(Boolean).join(', ')}) and it is sheddable`,
      droppedReason: DROPPED_REASON_SATURATED,
    };
  }
}
