/** Why the scheduler cannot be built or a request cannot be routed; `code` is stable. */
export type SchedulerErrorCode =
  /** The picker configuration is wrong (the message names the plugin and key). */
  | 'INVALID_CONFIG'
  /** A precise prefix scorer is configured without an index to read. */
  | 'NO_PREFIX_BACKEND'
  /** A latency plugin is configured without a latency predictor. */
  | 'NO_LATENCY_PREDICTOR';

export class SchedulerError extends Error {
  override readonly name = 'SchedulerError';
  constructor(
    readonly code: SchedulerErrorCode,
    message: string,
  ) {
    super(message);
  }
}
