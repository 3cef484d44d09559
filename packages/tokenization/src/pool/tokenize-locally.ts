import { TokenizationError } from '../errors.js';
import type { LocalTokenizer } from '../local-tokenizer.js';
import type { PromptInput } from '../prompt-tokenizer.js';

/**
 * The ids vLLM computes for the input, with the two checks vLLM's completions path makes that
 * LocalTokenizer itself does not (it is also used for plain text, where both are fine).
 */
export function tokenizeLocally(tokenizer: LocalTokenizer, input: PromptInput, timing?: { templateMs: number }): Uint32Array<ArrayBuffer> {
  let ids: number[];
  if (input.kind === 'completion') {
    if (input.prompt === '') throw new TokenizationError('INVALID_REQUEST', 'Either prompt or prompt_embeds must be provided and non-empty.');
    ids = tokenizer.encode(input.prompt, { addSpecialTokens: input.addSpecialTokens ?? true });
  } else {
    // encodeChat in two timed steps (the same calls), so traces can tell templating from tokenizing.
    const t0 = performance.now();
    const prompt = tokenizer.renderChat(input.messages, input.options);
    if (timing) timing.templateMs = performance.now() - t0;
    ids = tokenizer.encode(prompt, { addSpecialTokens: input.options?.addSpecialTokens ?? false });
  }
  if (ids.length === 0) throw new TokenizationError('INVALID_REQUEST', 'No token_ids rendered');
  return Uint32Array.from(ids);
}
