/**
 * What of an OpenAI chat request body the chat template sees: its messages and the options vLLM's
 * chat endpoint forwards to the template. One reading, used by the router on the request path and
 * by tokenizer threads sent the body's bytes, so both derive the same prompt from the same body.
 */
import type { ChatMessage, ChatTemplateOptions } from './types.js';

export interface ChatBodyPrompt {
  messages: ChatMessage[];
  options: ChatTemplateOptions;
}

/** The messages and template options of a parsed chat body, or null when it has no valid messages. */
export function chatPromptFromBody(obj: Record<string, unknown>): ChatBodyPrompt | null {
  const messages = obj['messages'];
  if (!Array.isArray(messages) || messages.length === 0 || !messages.every((m) => typeof m === 'object' && m !== null && typeof (m as { role?: unknown }).role === 'string')) return null;
  const options: ChatTemplateOptions = {};
  if (Array.isArray(obj['tools'])) options.tools = obj['tools'];
  if (typeof obj['add_generation_prompt'] === 'boolean') options.addGenerationPrompt = obj['add_generation_prompt'];
  if (typeof obj['continue_final_message'] === 'boolean') options.continueFinalMessage = obj['continue_final_message'];
  if (typeof obj['chat_template'] === 'string') options.chatTemplate = obj['chat_template'];
  const kwargs = obj['chat_template_kwargs'];
  if (typeof kwargs === 'object' && kwargs !== null && !Array.isArray(kwargs)) options.chatTemplateKwargs = kwargs as Record<string, unknown>;
  return { messages: messages as ChatMessage[], options };
}
