import { ScoringError, type PromptSpec, type ScorePrompt } from '@kvix/scoring';
import type { ChatMessage, ChatTemplateOptions } from '@kvix/tokenization';
import { z } from 'zod';

/** OpenAI's chat fields that change the rendered prompt; the rest of a request is ignored. */
export const ChatFields = z.object({
  messages: z.array(z.object({ role: z.string().min(1) }).passthrough()).min(1),
  tools: z.array(z.unknown()).nullish(),
  add_generation_prompt: z.boolean().nullish(),
  continue_final_message: z.boolean().nullish(),
  chat_template: z.string().nullish(),
  chat_template_kwargs: z.record(z.string(), z.unknown()).nullish(),
});
export type ChatFields = z.infer<typeof ChatFields>;

export const MultimodalItemSchema = z.object({ identifier: z.string().min(1), offset: z.number().int().min(0), length: z.number().int().min(1) }).strict();

export function chatPrompt(fields: ChatFields): ScorePrompt {
  const options: ChatTemplateOptions = {};
  if (fields.tools != null) options.tools = fields.tools;
  if (fields.add_generation_prompt != null) options.addGenerationPrompt = fields.add_generation_prompt;
  if (fields.continue_final_message != null) options.continueFinalMessage = fields.continue_final_message;
  if (fields.chat_template != null && fields.chat_template !== '') options.chatTemplate = fields.chat_template;
  if (fields.chat_template_kwargs != null) options.chatTemplateKwargs = fields.chat_template_kwargs;
  return { kind: 'chat', messages: fields.messages as ChatMessage[], options };
}

/** Parses a JSON string field of a gRPC request, naming the field when it is not valid JSON. */
export function jsonField(name: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ScoringError('INVALID_REQUEST', `${name} is not valid JSON: ${(err as Error).message}`);
  }
}

export function validated<T extends z.ZodType>(schema: T, value: unknown, what: string): z.output<T> {
  const r = schema.safeParse(value);
  if (!r.success) throw new ScoringError('INVALID_REQUEST', `${what}: ${r.error.issues.map((i) => `${i.path.join('.') || '(value)'}: ${i.message}`).join('; ')}`);
  return r.data;
}

export type { PromptSpec };
