/** Replication failures with stable codes. */
export class ReplicationError extends Error {
  override readonly name = 'ReplicationError';
  constructor(
    readonly code: 'MALFORMED_MESSAGE' | 'MALFORMED_SNAPSHOT' | 'NO_JETSTREAM' | 'UNREACHABLE' | 'CLOSED' | 'INVALID_INDEX' | 'INVALID_CONFIG',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
