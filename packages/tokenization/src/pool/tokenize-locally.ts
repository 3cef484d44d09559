import { TokenizationError } from '../errors.js';
import type { LocalTokenizer } from '../local-tokenizer.js';
import type { PromptInput } from '../prompt-tokenizer.js';

/** Where a local tokenization's time went (ms); filled by tokenizeLocally when given. */
export interface LocalTimings {
  templateMs: number;
  encodeMs: number;
}

/**
 * The ids vLLM computes for the input, with the two checks vLLM's completions path makes that
 * LocalTokenizer itself does not (it is also used for plain text, where both are fine).
 */
export function tokenizeLocally(tokenizer: LocalTokenizer, input: PromptInput, timings?: LocalTimings): Uint32Array<ArrayBuffer> {
  let ids: Uint32Array<ArrayBuffer>;
  const t0 = performance.now();
  let rendered = t0;
  if (input.kind === 'completion') {
    if (input.prompt === '') throw new TokenizationError('INVALID_REQUEST', 'Either prompt or prompt_embeds must be provided and non-empty.');
    ids = tokenizer.encodeIds(input.prompt, { addSpecialTokens: input.addSpecialTokens ?? true });
  } else {
    // encodeChat in two steps (the same calls), so a profile can tell templating from tokenizing.
    const prompt = tokenizer.renderChat(input.messages, input.options);
    rendered = performance.now();
    ids = tokenizer.encodeIds(prompt, { addSpecialTokens: input.options?.addSpecialTokens ?? false });
  }
  if (ids.length === 0) throw new TokenizationError('INVALID_REQUEST', 'No token_ids rendered');
  if (timings) {
    timings.templateMs = rendered - t0;
    timings.encodeMs = performance.now() - rendered;
  }
  return ids;
}
