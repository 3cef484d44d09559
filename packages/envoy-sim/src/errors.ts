/**
 * Stable codes for what can go wrong in the simulator itself (bad options) and in a processor's
 * answers (what Envoy would reject and turn into a local reply).
 */
export type EnvoySimErrorCode =
  /** An option is missing or out of range. */
  | 'INVALID_OPTIONS'
  /** A header mutation Envoy refuses (invalid name or value, both `value` and `raw_value` set). */
  | 'MUTATION_REJECTED'
  /** A processor message that does not fit the FULL_DUPLEX_STREAMED exchange at this point. */
  | 'PROTOCOL_VIOLATION'
  /** The simulator is not listening (start() not called, or close() already was). */
  | 'NOT_LISTENING';

export class EnvoySimError extends Error {
  override readonly name = 'EnvoySimError';
  constructor(
    readonly code: EnvoySimErrorCode,
    message: string,
  ) {
    super(message);
  }
}
