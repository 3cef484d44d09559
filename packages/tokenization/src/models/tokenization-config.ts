/** Which tokenizer answers for which model, as a service's configuration spells it. */
import { z } from 'zod';
import { TokenizationError } from '../errors.js';

const ROUTE_SHAPE = "{ local: <bundled tokenizer or directory> } or { render: { url, timeoutMs?, headers? } }";

const RenderTargetSchema = z
  .object({
    url: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL such as http://vllm:8000' }),
    timeoutMs: z.number().int().min(1).max(600_000).optional(),
    headers: z.record(z.string(), z.string()).optional(),
  })
  .strict();

const ModelRouteSchema = z
  .object(
    {
      local: z.string().min(1).optional(),
      render: RenderTargetSchema.optional(),
    },
    { error: (issue) => (issue.code === 'invalid_type' ? `expected ${ROUTE_SHAPE}` : undefined) },
  )
  .strict()
  .refine((route) => (route.local === undefined) !== (route.render === undefined), { error: `give exactly one of ${ROUTE_SHAPE}` });

export const TokenizationConfigSchema = z
  .object({
    /** Local tokenizer threads; 0 tokenizes on the event loop. Default: one per core but one. */
    workers: z.number().int().min(0).max(256).optional(),
    /** Local requests in flight before OVERLOADED. */
    maxInFlight: z.number().int().min(1).default(1024),
    /** Exact result cache budget; 0 disables it. */
    cacheBytes: z.number().int().min(0).default(64 * 2 ** 20),
    /**
     * Which answers the result cache keeps: `on-repeat` (default) only answers to a request seen
     * before — most chat turns are one of a kind, and keeping each one churns the heap — or `always`.
     */
    cacheAdmission: z.enum(['on-repeat', 'always']).default('on-repeat'),
    /** Longer prompts fail with PROMPT_TOO_LONG. */
    maxPromptTokens: z.number().int().min(1).default(131_072),
    /**
     * Characters per allowed token (of maxPromptTokens, or the model's context when smaller) a
     * prompt may have before it is tokenized, and a chat template may render: longer text is
     * PROMPT_TOO_LONG at once. Real text averages 3-5; raise it for highly repetitive prompts.
     */
    maxCharsPerToken: z.number().min(1).max(1024).default(8),
    /**
     * One tokenization's deadline, waiting included. Past it the caller gets DEADLINE_EXCEEDED (a
     * router then decides on its other scorers), a chat template stops rendering, and a thread
     * still busy with the request is replaced; the requests queued behind it run on.
     */
    timeoutMs: z.number().int().min(1).max(600_000).default(1000),
    /**
     * Accept a request's own chat template (`chat_template`, or `chat_template` in
     * `chat_template_kwargs`), as vLLM's --trust-request-chat-template does; refused (400) by
     * default. Trusted templates render on a thread of their own, under timeoutMs.
     */
    trustRequestChatTemplate: z.boolean().default(false),
    /** Heap of each tokenizer thread (MiB): a request that exhausts it ends that thread, not the process. */
    threadHeapMb: z.number().int().min(64).max(65_536).default(1024),
    /** Models not listed: served by a bundled tokenizer of the same name, rejected, rendered or tokenized by one spec. */
    default: z
      .union([z.enum(['bundled', 'reject']), ModelRouteSchema], { error: (issue) => (issue.code === 'invalid_union' ? `expected 'bundled', 'reject', ${ROUTE_SHAPE}` : undefined) })
      .default('bundled'),
    models: z.record(z.string().min(1), ModelRouteSchema).default({}),
  })
  .strict();

export type TokenizationConfig = z.output<typeof TokenizationConfigSchema>;
export type TokenizationConfigInput = z.input<typeof TokenizationConfigSchema>;
export type ModelRoute = z.output<typeof ModelRouteSchema>;
export type RenderTarget = z.output<typeof RenderTargetSchema>;

/** `models["Qwen/Qwen3-8B"].render.url`: model names hold dots and slashes, so they are quoted. */
function pathOf(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else if (typeof key === 'string' && /^[A-Za-z_$][\w$]*$/.test(key)) out += out === '' ? key : `.${key}`;
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out || '(root)';
}

/** Validates and fills defaults; INVALID_CONFIG names every offending key. */
export function parseTokenizationConfig(input: unknown): TokenizationConfig {
  const parsed = TokenizationConfigSchema.safeParse(input ?? {});
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((issue) => `${pathOf(issue.path)}: ${issue.message}`);
  throw new TokenizationError('INVALID_CONFIG', `invalid tokenization configuration: ${issues.join('; ')}`);
}
