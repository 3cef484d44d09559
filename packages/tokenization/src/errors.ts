/** Stable machine-readable codes for every error this package throws. */
export type TokenizationErrorCode =
  | 'UNKNOWN_BUNDLED_TOKENIZER'
  | 'INVALID_TOKENIZER'
  | 'TEMPLATE_ERROR'
  | 'NO_CHAT_TEMPLATE'
  | 'INVALID_REQUEST'
  | 'FILE_NOT_FOUND';

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
