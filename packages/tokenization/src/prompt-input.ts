/** Checks on a PromptInput that hold whichever tokenizer answers it. */
import { isPlainObject } from './config.js';
import { TokenizationError } from './errors.js';
import type { PromptInput } from './prompt-tokenizer.js';

function invalid(message: string): TokenizationError {
  return new TokenizationError('INVALID_REQUEST', message);
}

/**
 * The shape only: message contents, roles and options are checked by whoever renders them (the
 * local template code or vLLM), so that both reject the same requests with their own words.
 */
export function checkPromptInput(input: PromptInput): void {
  if (!isPlainObject(input)) throw invalid('the prompt input must be an object with a kind');
  if (input.kind === 'completion') {
    if (typeof input.prompt !== 'string') throw invalid('a completion prompt must be a string');
    if (input.addSpecialTokens !== undefined && typeof input.addSpecialTokens !== 'boolean') throw invalid('addSpecialTokens must be a boolean');
    return;
  }
  if (input.kind === 'chat') {
    if (!Array.isArray(input.messages)) throw invalid('chat messages must be an array');
    if (input.options !== undefined && !isPlainObject(input.options)) throw invalid('chat options must be an object');
    return;
  }
  throw invalid(`unknown prompt kind ${JSON.stringify((input as { kind?: unknown }).kind) ?? 'undefined'}; expected "completion" or "chat"`);
}

/** Characters of prompt text, for rejecting absurd inputs before spending time tokenizing them. */
export function promptTextLength(input: PromptInput): number {
  if (input.kind === 'completion') return input.prompt.length;
  let total = 0;
  for (const message of input.messages) {
    const content: unknown = isPlainObject(message) ? message['content'] : undefined;
    if (typeof content === 'string') total += content.length;
    else if (Array.isArray(content)) {
      for (const part of content) {
        const text: unknown = isPlainObject(part) ? part['text'] : undefined;
        if (typeof text === 'string') total += text.length;
      }
    }
  }
  return total;
}

/** vLLM 0.33's `validate_cache_salt`, so a local tokenizer refuses the salts the engine refuses. */
export function checkCacheSalt(salt: unknown): string | null {
  if (salt === undefined || salt === null) return null;
  if (typeof salt !== 'string' || salt === '') throw invalid("Parameter 'cache_salt' must be a non-empty string if provided.");
  if (salt.length > 128 || /[@/\\\0]/.test(salt)) {
    throw invalid("Parameter 'cache_salt' must be at most 128 characters and must not contain '@', '/', '\\\\', or NUL.");
  }
  return salt;
}
