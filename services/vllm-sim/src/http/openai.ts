import { z } from 'zod';

/** vLLM's error body: {"error": {message, type, param, code}}. */
export function errorBody(code: number, message: string, param: string | null = null): { error: { message: string; type: string; param: string | null; code: number } } {
  const type = code === 404 ? 'NotFoundError' : code === 400 || code === 422 ? 'BadRequestError' : code === 503 ? 'ServiceUnavailableError' : 'InternalServerError';
  return { error: { message, type, param, code } };
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

const tokenIds = z.array(z.number().int().min(0).max(0xffffffff));
const streamOptions = z.object({ include_usage: z.boolean().optional(), continuous_usage_stats: z.boolean().optional() }).passthrough().nullish();
const maxTokens = z.number().int().min(1).nullish();

export const CompletionRequest = z
  .object({
    model: z.string().nullish(),
    prompt: z.union([z.string(), z.array(z.string()).min(1), tokenIds.min(1), z.array(tokenIds.min(1)).min(1)]),
    max_tokens: maxTokens,
    stream: z.boolean().nullish(),
    stream_options: streamOptions,
    cache_salt: z.string().min(1).nullish(),
    add_special_tokens: z.boolean().nullish(),
    echo: z.boolean().nullish(),
    n: z.number().int().min(1).max(1).nullish(),
  })
  .passthrough();
export type CompletionRequest = z.infer<typeof CompletionRequest>;

const contentPart = z.object({ type: z.string(), text: z.string().optional() }).passthrough();
const message = z
  .object({
    role: z.string().min(1),
    content: z.union([z.string(), z.array(contentPart), z.null()]).optional(),
  })
  .passthrough();

export const ChatRequest = z
  .object({
    model: z.string().nullish(),
    messages: z.array(message).min(1),
    max_tokens: maxTokens,
    max_completion_tokens: maxTokens,
    stream: z.boolean().nullish(),
    stream_options: streamOptions,
    tools: z.array(z.unknown()).nullish(),
    chat_template: z.string().nullish(),
    chat_template_kwargs: z.record(z.string(), z.unknown()).nullish(),
    add_generation_prompt: z.boolean().nullish(),
    continue_final_message: z.boolean().nullish(),
    cache_salt: z.string().min(1).nullish(),
    n: z.number().int().min(1).max(1).nullish(),
  })
  .passthrough();
export type ChatRequest = z.infer<typeof ChatRequest>;

export const TokenizeCompletionRequest = z
  .object({ model: z.string().nullish(), prompt: z.string(), add_special_tokens: z.boolean().nullish(), return_token_strs: z.boolean().nullish() })
  .passthrough();

export const TokenizeChatRequest = z
  .object({
    model: z.string().nullish(),
    messages: z.array(message).min(1),
    add_generation_prompt: z.boolean().nullish(),
    continue_final_message: z.boolean().nullish(),
    add_special_tokens: z.boolean().nullish(),
    return_token_strs: z.boolean().nullish(),
    tools: z.array(z.unknown()).nullish(),
    chat_template: z.string().nullish(),
    chat_template_kwargs: z.record(z.string(), z.unknown()).nullish(),
  })
  .passthrough();

export const DetokenizeRequest = z.object({ model: z.string().nullish(), tokens: tokenIds }).passthrough();

export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const param = issue.path.length ? issue.path.join('.') : null;
  throw new HttpError(400, `${param ?? 'body'}: ${issue.message}`, param);
}

export interface Usage {
  prompt_tokens: number;
  total_tokens: number;
  completion_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
}

export function usage(promptTokens: number, completionTokens: number, cachedTokens: number): Usage {
  return {
    prompt_tokens: promptTokens,
    total_tokens: promptTokens + completionTokens,
    completion_tokens: completionTokens,
    prompt_tokens_details: { cached_tokens: cachedTokens },
  };
}
