import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type ServerResponse } from 'node:http';
import { TokenizationError, type ChatMessage, type ChatTemplateOptions, type LocalTokenizer } from '@kvix/tokenization';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { Engine, FinishReason, GenerationResult } from '../engine/engine.js';
import type { EventPublisher } from '../events/publisher.js';
import type { SimMetrics } from '../metrics.js';
import type { SimTracer } from '../tracing.js';
import {
  ChatRequest,
  CompletionRequest,
  DetokenizeRequest,
  HttpError,
  TokenizeChatRequest,
  TokenizeCompletionRequest,
  checkGenerationRequest,
  errorBody,
  parseBody,
  usage,
  validationError,
} from './openai.js';

export interface LoraModule {
  name: string;
  path: string;
  /** The base model it adapts (vLLM's `base_model_name`); null: the first served name. */
  baseModelName: string | null;
  /** vLLM's integer adapter id (1-based, in the order given). */
  id: number;
}

export interface Faults {
  /** Fraction of event batches kept off the wire (still replayable). */
  dropEventsFraction: number;
  /** Multiplier on every engine step's duration. */
  slowdown: number;
  /** Fraction of generation requests answered 503. */
  refuseFraction: number;
}

/** What the HTTP layer of one rank needs. */
export interface RankContext {
  rank: number;
  servedModelNames: readonly string[];
  modelRoot: string;
  maxModelLen: number;
  defaultMaxTokens: number;
  /** vLLM's --enable-prompt-tokens-details: usage carries prompt_tokens_details.cached_tokens. */
  promptTokensDetails: boolean;
  /** vLLM's --trust-request-chat-template: a request's own chat template is rendered, not refused. */
  trustRequestChatTemplate: boolean;
  tokenizer: LocalTokenizer;
  loras: readonly LoraModule[];
  engine: () => Engine;
  publisher: () => EventPublisher;
  metrics: SimMetrics;
  faults: Faults;
  restartPublisher(): Promise<void>;
  restartEngine(): Promise<void>;
  logger: Logger;
  /** Set with --otlp-traces-endpoint: a span per generation request. */
  tracer?: SimTracer | null;
}

interface Resolved {
  /** The model name to echo back. */
  model: string;
  loraName: string | null;
  loraId: number | null;
}

const created = (): number => Math.floor(Date.now() / 1000);

/** vLLM's ModelCard, with the one default ModelPermission it always lists. */
function modelCard(id: string, root: string, parent: string | null, maxModelLen: number | null): Record<string, unknown> {
  const now = created();
  const permission = {
    id: `modelperm-${randomUUID().replaceAll('-', '')}`,
    object: 'model_permission',
    created: now,
    allow_create_engine: false,
    allow_sampling: true,
    allow_logprobs: true,
    allow_search_indices: false,
    allow_view: true,
    allow_fine_tuning: false,
    organization: '*',
    group: null,
    is_blocking: false,
  };
  return { id, object: 'model', created: now, owned_by: 'vllm', root, parent, max_model_len: maxModelLen, permission: [permission] };
}

export function buildServer(ctx: RankContext): FastifyInstance {
  // No implicit HEAD routes: vLLM (FastAPI) answers HEAD on a GET route with 405.
  const app = Fastify({ bodyLimit: 64 * 1024 * 1024, logger: false, exposeHeadRoutes: false });

  app.setErrorHandler((err: Error, _req, reply) => {
    if (err instanceof HttpError) return reply.code(err.status).send(errorBody(err.status, err.message, err.param, err.type));
    if (err instanceof TokenizationError || err instanceof RangeError) return reply.code(400).send(errorBody(400, err.message));
    const status = (err as { statusCode?: number }).statusCode;
    // Malformed JSON, an oversized body: request-level errors, named by their HTTP status as vLLM's handlers name them.
    if (status !== undefined && status >= 400 && status < 500) return reply.code(status).send(errorBody(status, err.message, status === 400 ? 'body' : null, STATUS_CODES[status]));
    ctx.logger.error({ err: err.message }, 'request failed');
    return reply.code(500).send(errorBody(500, 'internal simulator error'));
  });

  // vLLM's shapes for an unknown route (404) and a known route with another method (405).
  app.setNotFoundHandler((req, reply) => {
    const url = req.url.split('?', 1)[0]!;
    const elsewhere = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'].some((method) => method !== req.method && app.hasRoute({ method, url }));
    const status = elsewhere ? 405 : 404;
    return reply.code(status).send(errorBody(status, STATUS_CODES[status]!, null, STATUS_CODES[status]));
  });

  // vLLM's validate_json_request on its OpenAI routes: the body must be declared application/json.
  const jsonOnly = async (req: FastifyRequest): Promise<void> => {
    const media = (req.headers['content-type'] ?? '').toLowerCase().split(';', 1)[0]!.trim();
    if (media !== 'application/json') throw validationError("1 validation error:\n  Unsupported Media Type: Only 'application/json' is allowed", null);
  };

  const resolveModel = (requested: string | null | undefined): Resolved => {
    const name = requested ?? ctx.servedModelNames[0]!;
    if (ctx.servedModelNames.includes(name)) return { model: name, loraName: null, loraId: null };
    const lora = ctx.loras.find((l) => l.name === name);
    if (lora) return { model: name, loraName: lora.name, loraId: lora.id };
    throw new HttpError(404, `The model \`${name}\` does not exist.`, 'model');
  };

  const checkLength = (promptTokens: number, maxTokens: number): void => {
    if (promptTokens + maxTokens > ctx.maxModelLen) {
      throw new HttpError(
        400,
        `This model's maximum context length is ${ctx.maxModelLen} tokens. However, you requested ${promptTokens + maxTokens} tokens (${promptTokens} in the messages, ${maxTokens} in the completion). Please reduce the length of the messages or completion.`,
        'max_tokens',
      );
    }
  };

  const refuseMaybe = (): void => {
    if (ctx.faults.refuseFraction > 0 && Math.random() < ctx.faults.refuseFraction) {
      throw new HttpError(503, 'The simulator is refusing requests (fault injection)');
    }
  };

  // vLLM traces generation requests only, each span ending when its response does (streams too).
  const tracer = ctx.tracer;
  if (tracer) {
    app.addHook('preHandler', async (req, reply) => {
      const route = req.routeOptions.url;
      if (req.method !== 'POST' || (route !== '/v1/completions' && route !== '/v1/chat/completions')) return;
      const body = req.body as { model?: unknown; stream?: unknown } | null;
      const span = tracer.start(req.headers, { 'gen_ai.request.model': typeof body?.model === 'string' ? body.model : '', 'url.path': route, 'gen_ai.request.stream': body?.stream === true });
      reply.raw.once('close', () => {
        span.setAttribute('http.response.status_code', reply.raw.statusCode);
        span.end();
      });
    });
  }

  app.get('/health', async (_req, reply) => reply.code(200).send());

  // vLLM's model cards: adapters carry no max_model_len, and name their base model as parent only
  // when it is one the server serves.
  app.get('/v1/models', async () => ({
    object: 'list',
    data: [
      ...ctx.servedModelNames.map((id) => modelCard(id, ctx.modelRoot, null, ctx.maxModelLen)),
      ...ctx.loras.map((l) => modelCard(l.name, l.path, l.baseModelName !== null && ctx.servedModelNames.includes(l.baseModelName) ? l.baseModelName : ctx.servedModelNames[0]!, null)),
    ],
  }));

  app.post('/tokenize', { onRequest: jsonOnly }, async (req) => {
    const isChat = typeof req.body === 'object' && req.body !== null && 'messages' in req.body;
    // vLLM: a chat prompt is rendered then encoded without special tokens; a plain prompt with them.
    let tokens: number[];
    let returnStrings: boolean;
    if (isChat) {
      const body = parseBody(TokenizeChatRequest, req.body);
      resolveModel(body.model);
      tokens = encodeChat(ctx, body, { ...chatOptions(body), addSpecialTokens: body.add_special_tokens ?? false });
      returnStrings = body.return_token_strs === true;
    } else {
      const body = parseBody(TokenizeCompletionRequest, req.body);
      resolveModel(body.model);
      tokens = ctx.tokenizer.encode(body.prompt, { addSpecialTokens: body.add_special_tokens ?? true });
      returnStrings = body.return_token_strs === true;
    }
    return { count: tokens.length, max_model_len: ctx.maxModelLen, tokens, token_strs: returnStrings ? ctx.tokenizer.tokenStrings(tokens) : null };
  });

  app.post('/detokenize', { onRequest: jsonOnly }, async (req) => {
    const body = parseBody(DetokenizeRequest, req.body);
    resolveModel(body.model);
    // vLLM's /detokenize keeps special tokens.
    return { prompt: ctx.tokenizer.decode(body.tokens, { skipSpecialTokens: false }) };
  });

  const completionPrompts = (body: CompletionRequest): number[][] => {
    const p = body.prompt;
    const addSpecial = body.add_special_tokens ?? true;
    if (typeof p === 'string') return [ctx.tokenizer.encode(p, { addSpecialTokens: addSpecial })];
    if (p.length > 0 && typeof p[0] === 'number') return [p as number[]];
    if (typeof p[0] === 'string') return (p as string[]).map((s) => ctx.tokenizer.encode(s, { addSpecialTokens: addSpecial }));
    return p as number[][];
  };

  app.post('/v1/completions/render', { onRequest: jsonOnly }, async (req) => {
    const body = parseBody(CompletionRequest, req.body);
    checkGenerationRequest(body);
    const model = resolveModel(body.model);
    return completionPrompts(body).map((tokens) => renderResult('cmpl', tokens, model.model, body, body.max_tokens ?? 16));
  });

  app.post('/v1/chat/completions/render', { onRequest: jsonOnly }, async (req) => {
    const body = parseBody(ChatRequest, req.body);
    checkGenerationRequest(body);
    const model = resolveModel(body.model);
    const tokens = encodeChat(ctx, body, chatOptions(body));
    // Render generates nothing, so vLLM's own default applies: whatever the context has left.
    return renderResult('chatcmpl', tokens, model.model, body, body.max_completion_tokens ?? body.max_tokens ?? Math.max(1, ctx.maxModelLen - tokens.length));
  });

  app.post('/v1/completions', { onRequest: jsonOnly }, async (req, reply) => {
    refuseMaybe();
    const body = parseBody(CompletionRequest, req.body);
    checkGenerationRequest(body);
    const model = resolveModel(body.model);
    const prompts = completionPrompts(body);
    const maxTokens = body.max_tokens ?? 16;
    for (const p of prompts) checkLength(p.length, maxTokens);
    const id = `cmpl-${randomUUID().replaceAll('-', '')}`;
    const salt = body.cache_salt ?? null;
    if (body.stream) {
      if (prompts.length > 1) throw new HttpError(400, 'the simulator streams one prompt per request', 'prompt');
      return streamGeneration(reply, id, prompts[0]!, maxTokens, model, salt, { kind: 'completion' }, usageMode(body.stream_options));
    }
    const results = await Promise.all(prompts.map((p, i) => generate(`${id}-${i}`, p, maxTokens, model, salt, reply.raw)));
    const total = results.reduce((acc, r) => ({ p: acc.p + r.result.promptTokens, c: acc.c + r.result.completionTokens }), { p: 0, c: 0 });
    return {
      id,
      object: 'text_completion',
      created: created(),
      model: model.model,
      choices: results.map((r, index) => ({ index, text: r.text, logprobs: null, finish_reason: r.result.finishReason, stop_reason: null, prompt_logprobs: null })),
      service_tier: null,
      system_fingerprint: null,
      // vLLM reports the cached tokens of the last prompt only, not a sum.
      usage: usage(total.p, total.c, results.at(-1)!.result.cachedTokens, ctx.promptTokensDetails),
      kv_transfer_params: null,
    };
  });

  app.post('/v1/chat/completions', { onRequest: jsonOnly }, async (req, reply) => {
    refuseMaybe();
    const body = parseBody(ChatRequest, req.body);
    checkGenerationRequest(body);
    const model = resolveModel(body.model);
    const tokens = encodeChat(ctx, body, chatOptions(body));
    const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? Math.max(1, Math.min(ctx.defaultMaxTokens, ctx.maxModelLen - tokens.length));
    checkLength(tokens.length, maxTokens);
    const id = `chatcmpl-${randomUUID().replaceAll('-', '')}`;
    const salt = body.cache_salt ?? null;
    // vLLM answers as the assistant after a generation prompt, otherwise as the last message's author.
    const role = chatOptions(body).addGenerationPrompt ? 'assistant' : body.messages.at(-1)!.role;
    if (body.stream) return streamGeneration(reply, id, tokens, maxTokens, model, salt, { kind: 'chat', role }, usageMode(body.stream_options));
    const { text, result } = await generate(id, tokens, maxTokens, model, salt, reply.raw);
    return {
      id,
      object: 'chat.completion',
      created: created(),
      model: model.model,
      choices: [{ index: 0, message: { role, content: text, reasoning_content: null, tool_calls: [] }, logprobs: null, finish_reason: result.finishReason, stop_reason: null }],
      service_tier: null,
      system_fingerprint: null,
      usage: usage(result.promptTokens, result.completionTokens, result.cachedTokens, ctx.promptTokensDetails),
      prompt_logprobs: null,
      kv_transfer_params: null,
    };
  });

  // vLLM's dev-mode route (VLLM_SERVER_DEV_MODE=1): {"success": false} while requests hold blocks.
  app.post('/reset_prefix_cache', async (req) => {
    const query = (req.query ?? {}) as Record<string, unknown>;
    const success = await ctx.engine().resetPrefixCache({ resetRunning: queryBool(query, 'reset_running_requests'), resetExternal: queryBool(query, 'reset_external') });
    return { success };
  });

  // How often routers read /metrics (tests check how many processes scrape; vLLM has no such count).
  let metricsReads = 0;
  app.get('/metrics', async (_req, reply) => {
    metricsReads++;
    reply.header('content-type', ctx.metrics.registry.contentType);
    return ctx.metrics.text();
  });

  // ---- simulator controls (not part of vLLM) -----------------------------------------------

  app.get('/sim/state', async () => {
    const e = ctx.engine();
    const p = ctx.publisher();
    return {
      rank: ctx.rank,
      running: e.stats.running,
      waiting: e.stats.waiting,
      freeBlocks: e.pool.free,
      cachedBlocks: e.pool.cachedBlocks,
      kvUsage: e.stats.kvUsage,
      publisher: { ...p.stats, nextSeq: p.stats.nextSeq.toString(), endpoint: p.endpoint, replayEndpoint: p.replayEndpoint },
      faults: ctx.faults,
      metricsReads,
    };
  });

  app.post('/sim/faults', async (req) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    const fraction = (key: string): number | undefined => {
      const v = body[key];
      if (v === undefined) return undefined;
      if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw new HttpError(400, `${key} must be a number in [0, 1]`, key);
      return v;
    };
    const drop = fraction('dropEventsFraction');
    const refuse = fraction('refuseFraction');
    if (drop !== undefined) ctx.faults.dropEventsFraction = drop;
    if (refuse !== undefined) ctx.faults.refuseFraction = refuse;
    if (body['slowdown'] !== undefined) {
      const s = body['slowdown'];
      if (typeof s !== 'number' || !(s >= 1 && s <= 1000)) throw new HttpError(400, 'slowdown must be a number in [1, 1000]', 'slowdown');
      ctx.faults.slowdown = s;
    }
    ctx.publisher().dropFraction = ctx.faults.dropEventsFraction;
    ctx.engine().slowdown = ctx.faults.slowdown;
    if (body['restartEngine'] === true) await ctx.restartEngine();
    else if (body['restartPublisher'] === true) await ctx.restartPublisher();
    if (body['restartLmcacheServer'] === true) await ctx.engine().restartLmcacheServer();
    ctx.logger.info({ faults: ctx.faults, restartEngine: body['restartEngine'] === true, restartPublisher: body['restartPublisher'] === true }, 'faults changed');
    return ctx.faults;
  });

  /** How much of a prompt this rank holds, from its own cache (the oracle for index tests). */
  app.post('/sim/prefix', async (req) => {
    const body = (req.body ?? {}) as { tokens?: unknown; model?: string; cache_salt?: string };
    if (!Array.isArray(body.tokens) || !body.tokens.every((t) => Number.isInteger(t) && (t as number) >= 0)) throw new HttpError(400, 'tokens must be an array of token ids', 'tokens');
    const model = resolveModel(body.model);
    return ctx.engine().cachedPrefix(Uint32Array.from(body.tokens as number[]), model.loraName, model.loraId, body.cache_salt ?? null);
  });

  /** vLLM's GenerateRequest, every key present as its model_dump() writes them. */
  function renderResult(
    idPrefix: 'cmpl' | 'chatcmpl',
    tokens: number[],
    model: string,
    body: { cache_salt?: string | null; stream?: boolean | null; stream_options?: Record<string, unknown> | null; priority?: unknown },
    maxTokens: number,
  ): Record<string, unknown> {
    const stream = body.stream === true;
    return {
      request_id: `${idPrefix}-${randomUUID().replaceAll('-', '')}`,
      token_ids: tokens,
      features: null,
      sampling_params: { max_tokens: maxTokens },
      model,
      stream,
      stream_options: stream ? (body.stream_options ?? null) : null,
      cache_salt: body.cache_salt ?? null,
      priority: Number.isInteger(body.priority) ? body.priority : 0,
      kv_transfer_params: null,
    };
  }

  function generate(
    id: string,
    tokens: number[],
    maxTokens: number,
    model: Resolved,
    cacheSalt: string | null,
    res: ServerResponse,
  ): Promise<{ text: string; result: GenerationResult }> {
    return new Promise((resolve) => {
      const generated: number[] = [];
      const engine = ctx.engine();
      // The response closing before it was sent means the client went away (a request's own
      // 'close' fires as soon as its body has been read, so it cannot tell).
      const onClose = (): void => {
        if (!res.writableFinished) engine.abort(id);
      };
      res.once('close', onClose);
      engine.submit({
        id,
        prompt: Uint32Array.from(tokens),
        maxTokens,
        loraName: model.loraName,
        loraId: model.loraId,
        cacheSalt,
        onFirstToken: () => undefined,
        onToken: (t) => generated.push(t),
        onFinish: (result) => {
          res.off('close', onClose);
          ctx.metrics.observeFinished(result.e2eMs / 1000, result.finishReason);
          resolve({ text: ctx.tokenizer.decode(generated), result });
        },
      });
    });
  }

  /**
   * vLLM's SSE stream: the status line and headers at once; a chat stream's role chunk together
   * with the first token (vLLM sends it on the engine's first output, after prefill); one chunk per
   * token, the last one carrying finish_reason; then the usage chunk (if asked for) and [DONE].
   */
  function streamGeneration(
    reply: FastifyReply,
    id: string,
    tokens: number[],
    maxTokens: number,
    model: Resolved,
    cacheSalt: string | null,
    shape: { kind: 'completion' } | { kind: 'chat'; role: string },
    usageIn: StreamUsage,
  ): void {
    reply.hijack();
    const res: ServerResponse = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
    res.flushHeaders();
    const ts = created();
    const kind = shape.kind;
    const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    let generated = 0;
    // continuous_usage_stats: vLLM puts the running totals (without details) on every chunk.
    const send = (choices: unknown[], extra: Record<string, unknown> = {}): void => {
      const running = usageIn === 'continuous' ? { usage: { prompt_tokens: tokens.length, total_tokens: tokens.length + generated, completion_tokens: generated } } : {};
      res.write(`data: ${JSON.stringify({ id, object, created: ts, model: model.model, choices, ...running, ...extra })}\n\n`);
    };
    const engine = ctx.engine();
    let finished = false;
    res.on('close', () => {
      if (!finished) engine.abort(id);
    });
    engine.submit({
      id,
      prompt: Uint32Array.from(tokens),
      maxTokens,
      loraName: model.loraName,
      loraId: model.loraId,
      cacheSalt,
      onFirstToken: () => undefined,
      onToken: (t: number, finishReason: FinishReason | null) => {
        if (shape.kind === 'chat' && generated === 0) send([{ index: 0, delta: { role: shape.role, content: '' }, logprobs: null, finish_reason: null }]);
        generated++;
        const text = ctx.tokenizer.decode([t]);
        const end = finishReason === null ? {} : { stop_reason: null };
        if (kind === 'chat') send([{ index: 0, delta: { content: text }, logprobs: null, finish_reason: finishReason, ...end }]);
        else send([{ index: 0, text, logprobs: null, finish_reason: finishReason, stop_reason: null }]);
      },
      onFinish: (result) => {
        finished = true;
        ctx.metrics.observeFinished(result.e2eMs / 1000, result.finishReason);
        if (result.finishReason !== 'abort') {
          if (usageIn !== 'none') {
            // The usage chunk leaves out what is null (prompt_tokens_details without the flag).
            const { prompt_tokens_details: details, ...counts } = usage(result.promptTokens, result.completionTokens, result.cachedTokens, ctx.promptTokensDetails);
            send([], { usage: details === null ? counts : { ...counts, prompt_tokens_details: details } });
          }
          res.write('data: [DONE]\n\n');
        }
        res.end();
      },
    });
  }

  return app;
}

/** What `stream_options` asks for: no usage, a final usage chunk, or usage on every chunk too. */
type StreamUsage = 'none' | 'final' | 'continuous';

/**
 * vLLM's rule: any stream_options object turns usage on unless include_usage is false or null
 * (its default is true); continuous_usage_stats only counts together with it.
 */
function usageMode(options: { include_usage?: boolean | null | undefined; continuous_usage_stats?: boolean | null | undefined } | null | undefined): StreamUsage {
  if (options === null || options === undefined) return 'none';
  if (options.include_usage === false || options.include_usage === null) return 'none';
  return options.continuous_usage_stats === true ? 'continuous' : 'final';
}

/** A boolean query parameter as FastAPI/pydantic read one ("true", "1", "yes", "on", …); absent is false. */
function queryBool(query: Record<string, unknown>, name: string): boolean {
  const raw = query[name];
  if (raw === undefined) return false;
  const value = String(Array.isArray(raw) ? raw.at(-1) : raw).toLowerCase();
  if (['true', '1', 'yes', 'on', 't', 'y'].includes(value)) return true;
  if (['false', '0', 'no', 'off', 'f', 'n'].includes(value)) return false;
  throw validationError(`query.${name}: Input should be a valid boolean, unable to interpret input`, `query.${name}`);
}

/** vLLM's refusal of a request's own chat template without --trust-request-chat-template. */
const UNTRUSTED_TEMPLATE = 'Chat template is passed with request, but --trust-request-chat-template is not set. Refused request with untrusted chat template.';
/** A trusted template still renders under a budget: it runs on the event loop every request shares. */
const RENDER_BUDGET_MS = 5000;
const RENDERED_CHARS_PER_TOKEN = 16;

function encodeChat(ctx: RankContext, body: { messages: unknown[]; chat_template?: string | null; chat_template_kwargs?: Record<string, unknown> | null }, options: ChatTemplateOptions): number[] {
  const kwargTemplate = body.chat_template_kwargs?.['chat_template'];
  if (!ctx.trustRequestChatTemplate && ((body.chat_template ?? null) !== null || (kwargTemplate !== undefined && kwargTemplate !== null))) {
    throw new HttpError(400, UNTRUSTED_TEMPLATE);
  }
  return ctx.tokenizer.encodeChat(body.messages as ChatMessage[], options, { deadline: Date.now() + RENDER_BUDGET_MS, maxChars: ctx.maxModelLen * RENDERED_CHARS_PER_TOKEN });
}

function chatOptions(body: { add_generation_prompt?: boolean | null; continue_final_message?: boolean | null; tools?: unknown[] | null; chat_template?: string | null; chat_template_kwargs?: Record<string, unknown> | null }): {
  addGenerationPrompt: boolean;
  continueFinalMessage: boolean;
  tools: unknown[] | null;
  chatTemplate: string | null;
  chatTemplateKwargs: Record<string, unknown>;
} {
  const continueFinal = body.continue_final_message ?? false;
  return {
    addGenerationPrompt: body.add_generation_prompt ?? !continueFinal,
    continueFinalMessage: continueFinal,
    tools: body.tools ?? null,
    chatTemplate: body.chat_template ?? null,
    chatTemplateKwargs: body.chat_template_kwargs ?? {},
  };
}
