export type EventDecodeErrorCode =
  | 'TRUNCATED'
  | 'INVALID_MSGPACK'
  | 'NOT_A_BATCH'
  | 'BAD_TIMESTAMP'
  | 'BAD_EVENTS'
  | 'BAD_RANK'
  | 'TRAILING_BYTES'
  | 'BAD_FRAMES'
  | 'BAD_SEQ';

/**
 * A payload or frame set that cannot be read as an EventBatch at all. (One bad event inside a
 * well-formed batch is not an error: it is reported in `skipped` and the rest is returned.)
 */
export class EventDecodeError extends Error {
  override readonly name = 'EventDecodeError';
  constructor(
    readonly code: EventDecodeErrorCode,
    message: string,
    /** Byte offset in the payload where decoding stopped, when known. */
    readonly offset?: number,
  ) {
    super(offset === undefined ? message : `${message} (at byte ${offset})`);
  }
}

export type EventEncodeErrorCode = 'BAD_EVENT' | 'BAD_VALUE';

export class EventEncodeError extends Error {
  override readonly name = 'EventEncodeError';
  constructor(
    readonly code: EventEncodeErrorCode,
    message: string,
  ) {
    super(message);
  }
}
