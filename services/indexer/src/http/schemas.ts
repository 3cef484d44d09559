import type { PromptSpec, ScoreInput, ScorePrompt } from '@kvix/scoring';
import { ScoringError } from '@kvix/scoring';
import { z } from 'zod';
import { ChatFields, chatPrompt, MultimodalItemSchema, validated } from '../prompt-input.js';

const tokenId = z.number().int().min(0).max(0xffffffff);
const pods = z.array(z.string().min(1)).nullish();

/** POST /v1/score and /v1/routing-decisions: one of token_ids, prompt, messages. */
const PromptBody = {
  model: z.string().min(1),
  token_ids: z.array(tokenId).nullish(),
  prompt: z.string().nullish(),
  add_special_tokens: z.boolean().nullish(),
  messages: ChatFields.shape.messages.nullish(),
  tools: ChatFields.shape.tools,
  add_generation_prompt: ChatFields.shape.add_generation_prompt,
  continue_final_message: ChatFields.shape.continue_final_message,
  chat_template: ChatFields.shape.chat_template,
  chat_template_kwargs: ChatFields.shape.chat_template_kwargs,
  lora_name: z.string().nullish(),
  cache_salt: z.string().nullish(),
  multimodal: z.array(MultimodalItemSchema).nullish(),
};

export const ScoreBody = z.object({ ...PromptBody, pods }).strict();
export const DecisionBody = z
  .object({ ...PromptBody, pod: z.string().min(1), prefill_pod: z.string().min(1).nullish(), ttl_ms: z.number().int().positive().nullish() })
  .strict();

/** An OpenAI completions request body (other fields are ignored); `pods` is kvix's extension. */
export const CompletionsBody = z
  .object({
    model: z.string().min(1),
    prompt: z.union([z.string(), z.array(tokenId).min(1), z.array(z.string()).min(1), z.array(z.array(tokenId)).min(1)]),
    add_special_tokens: z.boolean().nullish(),
    cache_salt: z.string().nullish(),
    pods,
  })
  .passthrough();

/** An OpenAI chat completions request body (other fields are ignored); `pods` is kvix's extension. */
export const ChatBody = ChatFields.extend({ model: z.string().min(1), cache_salt: z.string().nullish(), pods }).passthrough();

type PromptBodyValue = z.output<typeof ScoreBody> | z.output<typeof DecisionBody>;

function specOf(body: PromptBodyValue): PromptSpec {
  const given = [body.token_ids != null, body.prompt != null, body.messages != null].filter(Boolean).length;
  if (given !== 1) throw new ScoringError('INVALID_REQUEST', 'give exactly one of token_ids, prompt or messages');
  let prompt: ScorePrompt;
  if (body.token_ids != null) prompt = { kind: 'tokens', tokenIds: body.token_ids };
  else if (body.prompt != null) prompt = { kind: 'completion', prompt: body.prompt, ...(body.add_special_tokens != null ? { addSpecialTokens: body.add_special_tokens } : {}) };
  else prompt = chatPrompt({ ...body, messages: body.messages! });
  return { model: body.model, prompt, loraName: body.lora_name ?? null, cacheSalt: body.cache_salt ?? null, multimodal: body.multimodal ?? null };
}

export function scoreInputOf(raw: unknown): ScoreInput {
  const body = validated(ScoreBody, raw, 'request');
  return { ...specOf(body), candidates: body.pods ?? null };
}

export function decisionOf(raw: unknown): PromptSpec & { pod: string; prefillPod: string | null; ttlMs: number | null } {
  const body = validated(DecisionBody, raw, 'request');
  return { ...specOf(body), pod: body.pod, prefillPod: body.prefill_pod ?? null, ttlMs: body.ttl_ms ?? null };
}

export function completionsInputOf(raw: unknown): ScoreInput {
  const body = validated(CompletionsBody, raw, 'request');
  const p = body.prompt;
  let prompt: ScorePrompt;
  if (typeof p === 'string') prompt = { kind: 'completion', prompt: p, ...(body.add_special_tokens != null ? { addSpecialTokens: body.add_special_tokens } : {}) };
  else if (typeof p[0] === 'number') prompt = { kind: 'tokens', tokenIds: p as number[] };
  else if ((p as unknown[]).length === 1) {
    const only = (p as (string | number[])[])[0]!;
    prompt = typeof only === 'string' ? { kind: 'completion', prompt: only } : { kind: 'tokens', tokenIds: only };
  } else throw new ScoringError('INVALID_REQUEST', 'score one prompt per request (the body holds a batch of prompts)');
  return { model: body.model, prompt, cacheSalt: body.cache_salt ?? null, candidates: body.pods ?? null };
}

export function chatInputOf(raw: unknown): ScoreInput {
  const body = validated(ChatBody, raw, 'request');
  return { model: body.model, prompt: chatPrompt(body), cacheSalt: body.cache_salt ?? null, candidates: body.pods ?? null };
}
