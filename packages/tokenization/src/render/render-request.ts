/** The body a vLLM render endpoint takes for a PromptInput (an OpenAI request minus sampling). */
import type { PromptInput } from '../prompt-tokenizer.js';

export interface RenderRequest {
  path: '/v1/completions/render' | '/v1/chat/completions/render';
  body: Record<string, unknown>;
}

/** Options the caller left undefined are left out, so vLLM applies its own defaults. */
export function renderRequest(model: string, input: PromptInput, cacheSalt: string | null): RenderRequest {
  const salt = cacheSalt === null ? {} : { cache_salt: cacheSalt };
  if (input.kind === 'completion') {
    return {
      path: '/v1/completions/render',
      body: { model, prompt: input.prompt, add_special_tokens: input.addSpecialTokens, ...salt },
    };
  }
  const o = input.options ?? {};
  return {
    path: '/v1/chat/completions/render',
    body: {
      model,
      messages: input.messages,
      tools: o.tools,
      add_generation_prompt: o.addGenerationPrompt,
      continue_final_message: o.continueFinalMessage,
      chat_template: o.chatTemplate,
      chat_template_kwargs: o.chatTemplateKwargs,
      add_special_tokens: o.addSpecialTokens,
      ...salt,
    },
  };
}
