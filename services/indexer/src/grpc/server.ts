import { Server, status, type ServerUnaryCall } from '@grpc/grpc-js';
import type { IndexStack } from '@kvix/kv-ingest';
import type { PodDirectory } from '../pod-directory.js';
import { grpcServerCredentials, loadKvixIndexer, loadLlmdIndexer, type GrpcServerTls, type DumpPodRequest__Output, type DumpPodResponse, type GetPodScoresRequest__Output, type GetPodScoresResponse, type GetStatsResponse, type KvixPodScore, type Prompt__Output, type RoutingDecisionRequest__Output, type RoutingDecisionResponse, type ScoreRequest__Output, type ScoreResponse } from '@kvix/proto';
import { ScoringError, type PrefixScorer, type PromptSpec, type ScorePrompt } from '@kvix/scoring';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from 'pino';
import type { ApiMetrics } from '../api-metrics.js';
import { classify, DebugRoutesOff } from '../errors.js';
import { ChatFields, chatPrompt, jsonField, MultimodalItemSchema, validated } from '../prompt-input.js';
import { statsView, dumpView } from '../views.js';
import { MalformedRequest, unary, withMalformedRequests } from './malformed.js';

export interface GrpcContext {
  scorer: PrefixScorer;
  stack: IndexStack;
  pods: PodDirectory;
  metrics: ApiMetrics;
  logger: Logger;
  /** Serve DumpPod (it lists a pod's index entries). */
  debugRoutes: boolean;
}

export interface GrpcOptions {
  host: string;
  port: number;
  maxMessageBytes: number;
  maxConcurrentStreams?: number;
  /** TLS (mutual with a client CA); plaintext without. */
  tls?: GrpcServerTls | undefined;
}

export const HEALTH_SERVICES = ['', 'indexer.v1.IndexerService', 'kvix.indexer.v1.KvixIndexer'] as const;

export interface RunningGrpc {
  port: number;
  health: HealthImplementation;
  stop(graceMs: number): Promise<void>;
}

/** Both indexer APIs and gRPC health on one server. Health says NOT_SERVING until the indexer is ready. */
export async function startGrpcServer(ctx: GrpcContext, options: GrpcOptions): Promise<RunningGrpc> {
  const server = new Server({ 'grpc.max_receive_message_length': options.maxMessageBytes, 'grpc.max_send_message_length': options.maxMessageBytes, 'grpc.max_concurrent_streams': options.maxConcurrentStreams ?? 1024 });
  const fail = (method: string) => (err: unknown, call: ServerUnaryCall<unknown, unknown>) => {
    const c = classify(err);
    if (!c.clientError) ctx.logger.error({ method, err: c.message, peer: call.getPeer() }, 'gRPC request failed');
    return { code: c.grpc, details: `${c.code}: ${c.message}` };
  };
  const timed = <T>(method: string, work: () => Promise<T>): Promise<T> => ctx.metrics.time('grpc', method, work, (err) => classify(err).code);
  const malformedCounted = <Req, Res>(method: string, handler: ReturnType<typeof unary<Req, Res>>): typeof handler => (call, callback) => {
    if (call.request instanceof MalformedRequest) ctx.metrics.rejected('grpc', method, 'MALFORMED');
    handler(call, callback);
  };

  const llmd = loadLlmdIndexer().indexer.v1.IndexerService.service;
  server.addService(withMalformedRequests(llmd), {
    GetPodScores: malformedCounted('GetPodScores', unary<GetPodScoresRequest__Output, GetPodScoresResponse>((req, call) => timed('GetPodScores', () => getPodScores(ctx, req, signalOf(call))), fail('GetPodScores'))),
  });

  const kvix = loadKvixIndexer().kvix.indexer.v1.KvixIndexer.service;
  server.addService(withMalformedRequests(kvix), {
    Score: malformedCounted('Score', unary<ScoreRequest__Output, ScoreResponse>((req, call) => timed('Score', () => score(ctx, req, signalOf(call))), fail('Score'))),
    RecordRoutingDecision: malformedCounted('RecordRoutingDecision', unary<RoutingDecisionRequest__Output, RoutingDecisionResponse>((req, call) => timed('RecordRoutingDecision', () => recordDecision(ctx, req, signalOf(call))), fail('RecordRoutingDecision'))),
    GetStats: malformedCounted('GetStats', unary<unknown, GetStatsResponse>(() => timed('GetStats', () => getStats(ctx)), fail('GetStats'))),
    DumpPod: malformedCounted('DumpPod', unary<DumpPodRequest__Output, DumpPodResponse>((req) => timed('DumpPod', () => (ctx.debugRoutes ? dumpPod(ctx, req) : Promise.reject(new DebugRoutesOff('DumpPod')))), fail('DumpPod'))),
  });

  const health = new HealthImplementation(Object.fromEntries(HEALTH_SERVICES.map((s) => [s, 'NOT_SERVING'])));
  health.addToServer(server);

  const address = `${options.host.includes(':') ? `[${options.host}]` : options.host}:${options.port}`;
  const port = await new Promise<number>((resolve, reject) => server.bindAsync(address, grpcServerCredentials(options.tls), (err, bound) => (err ? reject(new Error(`cannot listen for gRPC on ${address}: ${err.message}`)) : resolve(bound))));
  return {
    port,
    health,
    stop: (graceMs) =>
      new Promise<void>((resolve) => {
        for (const s of HEALTH_SERVICES) health.setStatus(s, 'NOT_SERVING');
        const timer = setTimeout(() => server.forceShutdown(), graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}

/**
 * Fires when the caller cancels or its deadline passes (grpc-js cancels the call then), so the
 * tokenization it waits for stops being awaited; the tokenizer's own deadline applies either way.
 */
function signalOf(call: ServerUnaryCall<unknown, unknown>): AbortSignal {
  const controller = new AbortController();
  if (call.cancelled) controller.abort();
  else call.once('cancelled', () => controller.abort());
  return controller.signal;
}

async function getPodScores(ctx: GrpcContext, req: GetPodScoresRequest__Output, signal: AbortSignal): Promise<GetPodScoresResponse> {
  if (req.modelName === '') throw new ScoringError('INVALID_REQUEST', 'model_name is required');
  // llm-d answers an empty prompt with no scores (it makes no block), and its clients expect that.
  if (req.prompt === '') return { scores: [] };
  const outcome = await ctx.scorer.score({
    model: req.modelName,
    prompt: { kind: 'completion', prompt: req.prompt },
    // proto3 cannot tell an empty list from none: llm-d reads empty as "every pod".
    candidates: req.podIdentifiers.length > 0 ? req.podIdentifiers : null,
  }, { signal });
  // llm-d returns the pods that hold something, with the tier-weighted block count.
  return { scores: outcome.scores.filter((s) => s.score > 0).map((s) => ({ pod: s.pod, score: s.score })) };
}

async function score(ctx: GrpcContext, req: ScoreRequest__Output, signal: AbortSignal): Promise<ScoreResponse> {
  if (req.prompt === null || req.prompt === undefined) throw new ScoringError('INVALID_REQUEST', 'prompt is required');
  const outcome = await ctx.scorer.score({ ...promptSpec(req.prompt), candidates: req.candidates ? req.candidates.pods : null }, { signal });
  const scores: KvixPodScore[] = outcome.scores.map((s) => ({ pod: s.pod, score: s.score, normalized: s.normalized, matchedBlocks: s.matchedBlocks, tiers: s.tiers, known: s.known }));
  return {
    scores,
    totalBlocks: outcome.totalBlocks,
    promptTokens: outcome.promptTokens,
    blockSize: outcome.blockSize,
    tokenization: outcome.tokenization,
    tokenizationCached: outcome.tokenizationCached,
  };
}

async function recordDecision(ctx: GrpcContext, req: RoutingDecisionRequest__Output, signal: AbortSignal): Promise<RoutingDecisionResponse> {
  if (req.prompt === null || req.prompt === undefined) throw new ScoringError('INVALID_REQUEST', 'prompt is required');
  const outcome = await ctx.scorer.recordDecision({ ...promptSpec(req.prompt), pod: req.pod, prefillPod: req.prefillPod || null, ttlMs: req.ttlMs || null }, { signal });
  return { inserted: outcome.inserted, blocks: outcome.blocks, ttlMs: outcome.ttlMs ?? 0 };
}

async function getStats(ctx: GrpcContext): Promise<GetStatsResponse> {
  const v = await statsView(ctx.stack, ctx.pods);
  return {
    backend: v.backend,
    entries: v.entries,
    keys: v.keys,
    bytesInUse: Math.round(v.bytesInUse),
    maxEntries: v.maxEntries,
    pods: v.pods.map((p) => ({ pod: p.pod, entries: p.entries, speculative: p.speculative, connected: p.connected, lastSeq: p.lastSeq ?? '' })),
    speculativeActive: v.speculative.active,
    speculativeConfirmed: v.speculative.confirmed,
    speculativeExpired: v.speculative.expired,
  };
}

async function dumpPod(ctx: GrpcContext, req: DumpPodRequest__Output): Promise<DumpPodResponse> {
  const page = await dumpView(ctx.stack, ctx.pods, req.pod, req.offset, req.limit || 100);
  return { pod: page.pod, total: page.total, entries: page.items.map((e) => ({ key: e.key, tier: e.tier, speculative: e.speculative, ...(e.group !== undefined ? { group: e.group } : {}) })) };
}

/** A kvix.indexer.v1 Prompt → the scorer's prompt spec. */
function promptSpec(p: Prompt__Output): PromptSpec {
  let prompt: ScorePrompt;
  switch (p.input) {
    case 'tokenIds':
      prompt = { kind: 'tokens', tokenIds: p.tokenIds?.ids ?? [] };
      break;
    case 'completion':
      prompt = { kind: 'completion', prompt: p.completion ?? '' };
      break;
    case 'chat': {
      const c = p.chat!;
      prompt = chatPrompt(
        validated(
          ChatFields,
          {
            messages: jsonField('chat.messages_json', c.messagesJson),
            tools: c.toolsJson ? jsonField('chat.tools_json', c.toolsJson) : null,
            add_generation_prompt: c.addGenerationPrompt ?? null,
            continue_final_message: c.continueFinalMessage,
            chat_template: c.chatTemplate || null,
            chat_template_kwargs: c.chatTemplateKwargsJson ? jsonField('chat.chat_template_kwargs_json', c.chatTemplateKwargsJson) : null,
          },
          'chat',
        ),
      );
      break;
    }
    default:
      throw new ScoringError('INVALID_REQUEST', 'prompt needs one of token_ids, completion or chat');
  }
  const multimodal = p.multimodal.length > 0 ? p.multimodal.map((m) => validated(MultimodalItemSchema, { identifier: m.identifier, offset: m.offset, length: m.length }, 'multimodal')) : null;
  return { model: p.model, prompt, loraName: p.loraName || null, cacheSalt: p.cacheSalt || null, multimodal };
}

export { status };
