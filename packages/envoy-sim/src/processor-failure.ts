import { status as GrpcStatus } from '@grpc/grpc-js';

/**
 * How a `Process` stream to one ext_proc host failed, in the terms of Envoy's retry conditions
 * (`retry_on` of the grpc_service `retry_policy`) and of outlier detection:
 * - `connect-failure`: no connection to the host (refused, unreachable, channel in TRANSIENT_FAILURE);
 * - `reset`: the connection or the stream broke after it was open (the host died, RST_STREAM);
 * - `unavailable`: the processor itself answered with gRPC status UNAVAILABLE;
 * - `error`: the processor answered with any other non-OK status.
 */
export type ProcessorFailure = 'connect-failure' | 'reset' | 'unavailable' | 'error';

/** The `retry_on` conditions the simulator understands for the ext_proc stream. */
export type ExtProcRetryOn = 'connect-failure' | 'reset' | 'unavailable';
export const EXT_PROC_RETRY_ON: readonly ExtProcRetryOn[] = ['connect-failure', 'reset', 'unavailable'];

// grpc-js reports a transport failure as a status whose details it writes itself; these are the
// texts it uses for a stream reset by the peer or a connection that dropped (subchannel-call.ts).
const TRANSPORT_RESET = /^(Call cancelled|Connection dropped|Stream refused by server|Received RST_STREAM)/;

/**
 * Classifies a failed status. `connected` says whether the call ever reached the host (grpc-js
 * reports the channel target as the peer until a connection carries the call), which is what
 * separates Envoy's connect-failure from a reset.
 */
export function classifyFailure(code: GrpcStatus, details: string, connected: boolean): ProcessorFailure {
  if (!connected) return 'connect-failure';
  if (TRANSPORT_RESET.test(details)) return 'reset';
  return code === GrpcStatus.UNAVAILABLE ? 'unavailable' : 'error';
}
