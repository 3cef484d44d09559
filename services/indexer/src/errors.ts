import { status as GrpcStatus } from '@grpc/grpc-js';
import { IndexError } from '@kvix/kv-index';
import { ScoringError } from '@kvix/scoring';
import { TokenizationError } from '@kvix/tokenization';

/** Errors of this service's own API surface (beyond the libraries'). */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly code: 'UNKNOWN_POD',
    message: string,
  ) {
    super(message);
  }
}

/** A route that changes or dumps the index, asked for while --debug-routes is off. */
export class DebugRoutesOff extends Error {
  override readonly name = 'DebugRoutesOff';
  readonly code = 'DEBUG_ROUTES_OFF';
  constructor(route: string) {
    super(`${route} is off: it dumps the index; start the indexer with --debug-routes to serve it (see SECURITY.md)`);
  }
}

export interface ClassifiedError {
  /** Stable code for clients (the library's own code, or INTERNAL). */
  code: string;
  http: number;
  grpc: GrpcStatus;
  message: string;
  /** A client mistake is answered, not logged; anything else is logged with context. */
  clientError: boolean;
}

/** Error code → statuses. A client mistake is never a 500, and never crashes a stream. */
const TABLE: Readonly<Record<string, [number, GrpcStatus]>> = {
  INVALID_REQUEST: [400, GrpcStatus.INVALID_ARGUMENT],
  EMPTY_CANDIDATES: [400, GrpcStatus.INVALID_ARGUMENT],
  INVALID_POD: [400, GrpcStatus.INVALID_ARGUMENT],
  PROMPT_TOO_LONG: [400, GrpcStatus.INVALID_ARGUMENT],
  TEMPLATE_ERROR: [400, GrpcStatus.INVALID_ARGUMENT],
  NO_TOKENIZER: [400, GrpcStatus.FAILED_PRECONDITION],
  NO_CHAT_TEMPLATE: [400, GrpcStatus.FAILED_PRECONDITION],
  UNKNOWN_MODEL: [404, GrpcStatus.NOT_FOUND],
  OVERLOADED: [503, GrpcStatus.RESOURCE_EXHAUSTED],
  RENDER_UNAVAILABLE: [502, GrpcStatus.UNAVAILABLE],
  BACKEND_UNAVAILABLE: [503, GrpcStatus.UNAVAILABLE],
  UNKNOWN_POD: [404, GrpcStatus.NOT_FOUND],
  DEBUG_ROUTES_OFF: [404, GrpcStatus.PERMISSION_DENIED],
  // The client went away, or the service is shutting down.
  ABORTED: [499, GrpcStatus.CANCELLED],
  CLOSED: [503, GrpcStatus.UNAVAILABLE],
  // Tokenization outlived its deadline: the caller routes without these scores.
  DEADLINE_EXCEEDED: [504, GrpcStatus.DEADLINE_EXCEEDED],
};

/** 5xx answers that are conditions, not faults: counted by the API metrics, not logged per request. */
const EXPECTED = new Set(['CLOSED', 'DEADLINE_EXCEEDED']);

export function classify(err: unknown): ClassifiedError {
  const known = err instanceof ScoringError || err instanceof TokenizationError || err instanceof IndexError || err instanceof ApiError || err instanceof DebugRoutesOff ? err : null;
  if (known !== null) {
    const row = TABLE[known.code];
    if (row !== undefined) return { code: known.code, http: row[0], grpc: row[1], message: known.message, clientError: row[0] < 500 || EXPECTED.has(known.code) };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'INTERNAL', http: 500, grpc: GrpcStatus.INTERNAL, message, clientError: false };
}
