import { TokenizationError } from '../errors.js';
import type { LocalTokenizer } from '../local-tokenizer.js';
import { promptTextLength } from '../prompt-input.js';
import type { PromptInput } from '../prompt-tokenizer.js';

/** What bounds one local tokenization (sent to a tokenizer thread with each request). */
export interface PromptLimits {
  /** Epoch milliseconds after which the answer is of no use: rendering stops there. */
  deadline: number | null;
  /** Tokens a prompt may have; with the model's own context length it bounds the text before any work. */
  maxPromptTokens: number | null;
  /** Characters per allowed token accepted before tokenizing (and rendered by a chat template). */
  maxCharsPerToken: number;
}

export const NO_LIMITS: PromptLimits = { deadline: null, maxPromptTokens: null, maxCharsPerToken: Infinity };

/**
 * The ids vLLM computes for the input, with the two checks vLLM's completions path makes that
 * LocalTokenizer itself does not (it is also used for plain text, where both are fine), and the
 * bounds that keep one request from holding a thread: text longer than the allowed tokens can
 * hold is refused before it is encoded, and a chat template stops at the deadline or once it has
 * rendered that much text.
 */
export function tokenizeLocally(tokenizer: LocalTokenizer, input: PromptInput, limits: PromptLimits = NO_LIMITS, timing?: { templateMs: number }): Uint32Array<ArrayBuffer> {
  const tokens = Math.min(limits.maxPromptTokens ?? Infinity, tokenizer.maxModelLen);
  const maxChars = tokens * limits.maxCharsPerToken;
  const chars = promptTextLength(input);
  if (chars > maxChars) {
    throw new TokenizationError('PROMPT_TOO_LONG', `the prompt has ${chars} characters, more than ${tokens} tokens can hold (${limits.maxCharsPerToken} characters per token are allowed)`);
  }
  let ids: number[];
  if (input.kind === 'completion') {
    if (input.prompt === '') throw new TokenizationError('INVALID_REQUEST', 'Either prompt or prompt_embeds must be provided and non-empty.');
    ids = tokenizer.encode(input.prompt, { addSpecialTokens: input.addSpecialTokens ?? true });
  } else {
    // encodeChat in two timed steps (the same calls), so traces can tell templating from tokenizing.
    const t0 = performance.now();
    const prompt = tokenizer.renderChat(input.messages, input.options, { ...(limits.deadline !== null ? { deadline: limits.deadline } : {}), maxChars });
    if (timing) timing.templateMs = performance.now() - t0;
    ids = tokenizer.encode(prompt, { addSpecialTokens: input.options?.addSpecialTokens ?? false });
  }
  if (ids.length === 0) throw new TokenizationError('INVALID_REQUEST', 'No token_ids rendered');
  return Uint32Array.from(ids);
}
