import type { JsonObject } from './json-struct.js';
import type { ProcessorAttempt } from './processor-stream.js';

/** How the exchange ended, from the client's point of view. */
export type ExchangeOutcome =
  /** An upstream answered and its response went to the client. */
  | 'proxied'
  /** The processor sent an immediate_response. */
  | 'immediate-response'
  /** No usable destination: 503, as Envoy's ORIGINAL_DST cluster answers without a host. */
  | 'no-route'
  /** Every endpoint refused the connection: 503. */
  | 'upstream-unavailable'
  /** A connected upstream reset the exchange. */
  | 'upstream-reset'
  /** The processor stream failed (unreachable, error status): 500. */
  | 'processor-error'
  /** The processor stayed silent past the message timeout: 504. */
  | 'processor-timeout'
  /** The processor sent something Envoy rejects (out-of-order message, bad mutation): 500. */
  | 'protocol-error'
  /** The client went away first. */
  | 'client-aborted';

/** What became of the processor for this request. */
export type ProcessorRole =
  /** It processed the whole exchange. */
  | 'processed'
  /** It closed the stream cleanly before the end; the rest went through unmodified. */
  | 'closed-early'
  /** It failed or timed out and `failureModeAllow` let the request through without it. */
  | 'skipped'
  /** It failed, and that failure is what the client got. */
  | 'failed';

export interface UpstreamAttempt {
  endpoint: string;
  /** Why the connection failed; absent for the attempt that connected. */
  error?: string;
}

/** Everything a test may want to know about one request through the simulator. */
export interface ExchangeReport {
  /** Sequence number of the request on this simulator, from 1. */
  id: number;
  /** The `x-request-id` the processor saw (the client's, or one the simulator generated as Envoy does). */
  requestId: string;
  method: string;
  path: string;
  /** Status the client received; 0 when its connection was reset instead. */
  status: number;
  outcome: ExchangeOutcome;
  processor: ProcessorRole;
  /** The ext_proc host whose stream carried the exchange (the last one opened). */
  processorHost: string;
  /** Every `Process` stream opened for the request, in order: the first, then each retry. */
  processorAttempts: ProcessorAttempt[];
  /** `processorAttempts.length - 1`: streams re-opened on another host. */
  processorRetries: number;
  /** The ordered destination list taken from the processor's answer (or the default upstreams, rotated). */
  endpoints: string[];
  /** The endpoint that served, when one did. */
  served?: string;
  attempts: UpstreamAttempt[];
  /** Whether the request_headers answer asked for `clear_route_cache`. */
  routeCacheCleared: boolean;
  /** The processor's `dynamic_metadata`, by namespace. */
  dynamicMetadata: Record<string, JsonObject>;
  /** Things Envoy would have done differently from what the processor seemed to expect. */
  notes: string[];
  /** Milestones, `performance.now()` milliseconds. */
  timings: {
    received: number;
    requestHeadersAnswered?: number;
    upstreamHeaders?: number;
    responseHeadersAnswered?: number;
    finished: number;
  };
  /** ProcessingRequest messages sent and ProcessingResponse messages received. */
  messages: { sent: number; received: number };
}
