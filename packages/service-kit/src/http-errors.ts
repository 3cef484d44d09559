import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/** Every kvix HTTP API answers an error with this body (and a 4xx/5xx status). */
export interface ApiErrorBody {
  error: { code: string; message: string };
}

export interface HttpErrorClass {
  status: number;
  code: string;
  message: string;
  /** A client mistake (4xx): answered, not logged as a failure. */
  clientError: boolean;
}

/**
 * The stable error codes kvix's libraries throw (their typed errors' `code`), and the status a
 * service answers them with. A client mistake is never a 500.
 */
export const HTTP_STATUS_OF_CODE: Readonly<Record<string, number>> = {
  INVALID_REQUEST: 400,
  INVALID_JSON: 400,
  EMPTY_CANDIDATES: 400,
  INVALID_POD: 400,
  PROMPT_TOO_LONG: 400,
  TEMPLATE_ERROR: 400,
  NO_TOKENIZER: 400,
  NO_CHAT_TEMPLATE: 400,
  UNAUTHENTICATED: 401,
  UNKNOWN_MODEL: 404,
  UNKNOWN_POD: 404,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  BODY_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  // The client went away (nginx's 499: never seen by that client, but counted as its doing).
  ABORTED: 499,
  RENDER_UNAVAILABLE: 502,
  OVERLOADED: 503,
  BACKEND_UNAVAILABLE: 503,
  CLOSED: 503,
  // Tokenization outlived its deadline (a hostile template, a prompt too slow to encode, overload).
  DEADLINE_EXCEEDED: 504,
};

/** 5xx codes that are conditions, not kvix faults: answered and counted, not logged per request. */
const EXPECTED_SERVER_CODES: ReadonlySet<string> = new Set(['CLOSED', 'DEADLINE_EXCEEDED']);

/** Fastify's own rejections under stable codes (its FST_* codes are not an API). */
const FRAMEWORK_CODES: Readonly<Record<string, string>> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'INVALID_REQUEST',
};

interface ErrorLike {
  message?: unknown;
  code?: unknown;
  statusCode?: unknown;
  validation?: unknown;
  issues?: unknown;
  name?: unknown;
}

/** The status, code and message an error is answered with. */
export function classifyHttpError(err: unknown): HttpErrorClass {
  const e = (typeof err === 'object' && err !== null ? err : {}) as ErrorLike;
  const message = typeof e.message === 'string' ? e.message : String(err);
  const code = typeof e.code === 'string' ? e.code : undefined;
  // A zod error escaping a handler is invalid input, never a server fault.
  if (e.name === 'ZodError' && Array.isArray(e.issues)) {
    const issues = (e.issues as { path?: unknown[]; message?: string }[]).map((i) => `${i.path?.length ? i.path.join('.') : 'body'}: ${i.message ?? 'invalid'}`);
    return { status: 400, code: 'INVALID_REQUEST', message: issues.join('; '), clientError: true };
  }
  if (code !== undefined && HTTP_STATUS_OF_CODE[code] !== undefined) {
    const status = HTTP_STATUS_OF_CODE[code]!;
    return { status, code, message, clientError: status < 500 || EXPECTED_SERVER_CODES.has(code) };
  }
  const statusCode = typeof e.statusCode === 'number' ? e.statusCode : undefined;
  if (statusCode !== undefined && statusCode >= 400 && statusCode < 500) {
    const mapped = err instanceof SyntaxError ? 'INVALID_JSON' : e.validation !== undefined ? 'INVALID_REQUEST' : (FRAMEWORK_CODES[code ?? ''] ?? 'INVALID_REQUEST');
    return { status: statusCode, code: mapped, message, clientError: true };
  }
  if (statusCode !== undefined && statusCode >= 500 && statusCode < 600 && code !== undefined && code.startsWith('FST_')) {
    return { status: statusCode, code: 'INTERNAL', message, clientError: false };
  }
  return { status: 500, code: 'INTERNAL', message, clientError: false };
}

export function errorBody(code: string, message: string): ApiErrorBody {
  return { error: { code, message } };
}

/** Answers `status` with the common error body. */
export function sendError(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  return reply.code(status).send(errorBody(code, message));
}

export interface ErrorHandlerOptions {
  /** A service's own classification first (undefined: the common one). */
  classify?: (err: unknown) => HttpErrorClass | undefined;
  /** Called for every answered error (metrics); `err` is what was thrown (undefined for an unknown route). */
  onError?: (req: FastifyRequest, error: HttpErrorClass, err: unknown) => void;
  /** Fields a compatible API must carry beside `error` (FastAPI's `detail` for llm-d's predictor API). */
  extraFields?: (error: HttpErrorClass) => Record<string, unknown>;
  /** Called for server faults (5xx, not CLOSED), to log them with context. */
  onServerError?: (req: FastifyRequest, error: HttpErrorClass, err: unknown) => void;
}

/**
 * The error and not-found handlers of a kvix HTTP API: every error, thrown by a route or by
 * Fastify itself (bad JSON, body too large, unknown route), is a 4xx/5xx with `{"error":{"code","message"}}`.
 */
export function registerErrorHandlers(app: FastifyInstance, options: ErrorHandlerOptions = {}): void {
  app.setErrorHandler((err: unknown, req, reply) => {
    const c = options.classify?.(err) ?? classifyHttpError(err);
    options.onError?.(req, c, err);
    if (!c.clientError) options.onServerError?.(req, c, err);
    return reply.code(c.status).send({ ...options.extraFields?.(c), ...errorBody(c.code, c.message) });
  });
  app.setNotFoundHandler((req, reply) => {
    const c: HttpErrorClass = { status: 404, code: 'NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}`, clientError: true };
    options.onError?.(req, c, undefined);
    return reply.code(c.status).send({ ...options.extraFields?.(c), ...errorBody(c.code, c.message) });
  });
}
