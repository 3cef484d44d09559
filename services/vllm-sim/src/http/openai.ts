import { STATUS_CODES } from 'node:http';
import { z } from 'zod';

/**
 * vLLM's error body: {"error": {message, type, param, code}}. Errors vLLM raises itself name a
 * class (BadRequestError, NotFoundError, …); request validation and HTTP-level errors (unknown
 * route, wrong method) carry the HTTP status phrase ("Bad Request", "Not Found", …).
 */
export function errorBody(code: number, message: string, param: string | null = null, type?: string): { error: { message: string; type: string; param: string | null; code: number } } {
  const name = type ?? (code === 404 ? 'NotFoundError' : code === 400 ? 'BadRequestError' : code === 422 ? 'UnprocessableEntityError' : code === 503 ? 'ServiceUnavailableError' : code >= 500 ? 'InternalServerError' : (STATUS_CODES[code] ?? 'Error'));
  return { error: { message, type: name, param, code } };
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    /** The error's `type` when it is not the class vLLM names for the status. */
    readonly type?: string,
  ) {
    super(message);
  }
}

/** What vLLM's request validation answers (pydantic, or its own model validators): 400 "Bad Request". */
export function validationError(message: string, param: string | null): HttpError {
  return new HttpError(400, message, param, 'Bad Request');
}

const tokenIds = z.array(z.number().int().min(0).max(0xffffffff));
const streamOptions = z.object({ include_usage: z.boolean().nullish(), continuous_usage_stats: z.boolean().nullish() }).passthrough().nullish();
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
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const path = issue.path.map(String).join('.');
    // vLLM names the field by its location in the request: body.<field>.
    throw validationError(`${path || 'body'}: ${issue.message}`, path ? `body.${path}` : 'body');
  }
  return parsed.data;
}

/** vLLM's model validators of completion and chat requests (generation and render alike). */
export function checkGenerationRequest(body: { stream?: boolean | null; stream_options?: Record<string, unknown> | null; prompt?: unknown }): void {
  // Python truthiness: an empty stream_options object is allowed without stream.
  if (body.stream_options && Object.keys(body.stream_options).length > 0 && !body.stream) {
    throw validationError('Stream options can only be defined when `stream=True`.', 'stream_options');
  }
  if (body.prompt === '') throw validationError('Either prompt or prompt_embeds must be provided and non-empty.', 'prompt');
}

export interface Usage {
  prompt_tokens: number;
  total_tokens: number;
  completion_tokens: number;
  prompt_tokens_details: { cached_tokens: number } | null;
}

/**
 * vLLM's UsageInfo. `prompt_tokens_details` is only filled in when the server runs with
 * --enable-prompt-tokens-details; otherwise it is null (and left out of streamed usage chunks).
 */
export function usage(promptTokens: number, completionTokens: number, cachedTokens: number, details: boolean): Usage {
  return {
    prompt_tokens: promptTokens,
    total_tokens: promptTokens + completionTokens,
    completion_tokens: completionTokens,
    prompt_tokens_details: details ? { cached_tokens: cachedTokens } : null,
  };
}
