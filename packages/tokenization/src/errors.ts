/** Stable machine-readable codes for every error this package throws. */
export type TokenizationErrorCode =
  | 'UNKNOWN_BUNDLED_TOKENIZER'
  | 'INVALID_TOKENIZER'
  | 'TEMPLATE_ERROR'
  | 'NO_CHAT_TEMPLATE'
  | 'INVALID_REQUEST'
  | 'FILE_NOT_FOUND'
  /** No tokenizer is configured for the model, or the vLLM server does not serve it. */
  | 'UNKNOWN_MODEL'
  /** A vLLM render endpoint could not answer: refused, timed out, 5xx, or an answer that is not a GenerateRequest. */
  | 'RENDER_UNAVAILABLE'
  /** The local pool already holds its maximum of requests in flight. */
  | 'OVERLOADED'
  /** The prompt has (or, judged by its length, would have) more tokens than allowed. */
  | 'PROMPT_TOO_LONG'
  /** A tokenizer thread failed; the request may be retried. */
  | 'INTERNAL'
  /**
   * The request's tokenization deadline passed (waiting included), or rendering its chat template
   * ran past it; a thread still busy with it is replaced.
   */
  | 'DEADLINE_EXCEEDED'
  /** The caller's AbortSignal fired first. */
  | 'ABORTED'
  /** The tokenizer was closed before or while the request ran. */
  | 'CLOSED'
  /** A configuration value is unusable; the message names its key. */
  | 'INVALID_CONFIG';

/**
 * Thrown for unusable tokenizer files, requests vLLM would reject with a 400, and chat templates
 * that fail (including their own `raise_exception`, whose text is the message).
 */
export class TokenizationError extends Error {
  override readonly name = 'TokenizationError';
  constructor(
    readonly code: TokenizationErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const CODES: ReadonlySet<string> = new Set<TokenizationErrorCode>([
  'UNKNOWN_BUNDLED_TOKENIZER',
  'INVALID_TOKENIZER',
  'TEMPLATE_ERROR',
  'NO_CHAT_TEMPLATE',
  'INVALID_REQUEST',
  'FILE_NOT_FOUND',
  'UNKNOWN_MODEL',
  'RENDER_UNAVAILABLE',
  'OVERLOADED',
  'PROMPT_TOO_LONG',
  'INTERNAL',
  'DEADLINE_EXCEEDED',
  'ABORTED',
  'CLOSED',
  'INVALID_CONFIG',
]);

/** For codes that crossed a thread boundary as plain strings. */
export function isTokenizationErrorCode(value: unknown): value is TokenizationErrorCode {
  return typeof value === 'string' && CODES.has(value);
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
