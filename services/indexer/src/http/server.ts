import type { IndexStack, IngestMetrics } from '@kvix/kv-ingest';
import type { PodDirectory } from '../pod-directory.js';
import type { PrefixScorer, ReuseAnalytics, ScoreInput, ScoreOutcome } from '@kvix/scoring';
import { fastifyListenerOptions, registerErrorHandlers, registerOpsRoutes, secureFastifyListener, sendError, type HttpListenerSettings, type Readiness } from '@kvix/service-kit';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { z } from 'zod';
import { analyticsDocument, registerReuseRoutes, type ReuseHistory } from '@kvix/reuse-page';
import type { ApiMetrics } from '../api-metrics.js';
import { classify } from '../errors.js';
import { validated } from '../prompt-input.js';
import { dumpView, statsView } from '../views.js';
import { chatInputOf, completionsInputOf, decisionOf, scoreInputOf } from './schemas.js';

export interface HttpContext {
  scorer: PrefixScorer;
  stack: IndexStack;
  pods: PodDirectory;
  analytics: ReuseAnalytics;
  ingestMetrics: IngestMetrics;
  apiMetrics: ApiMetrics;
  registry: Registry;
  readiness: () => Readiness;
  liveness?: () => Readiness;
  /** Limits, TLS and bearer token of the listener. */
  listener: HttpListenerSettings;
  /** Serve the routes that change or dump the index (routing decisions, pod entries). */
  debugRoutes: boolean;
  topPrefixes: number;
  /** Samples of the analytics the /ui page charts. */
  history: ReuseHistory;
  logger: Logger;
}

const DumpQuery = z.object({ offset: z.coerce.number().int().min(0).default(0), limit: z.coerce.number().int().min(1).max(10_000).default(100) }).strict();
const AnalyticsQuery = z.object({ top: z.coerce.number().int().min(1).max(1000).optional() }).strict();

/** The JSON API (snake_case, like the OpenAI and vLLM APIs it sits beside), metrics and probes. */
export function buildHttpServer(ctx: HttpContext): FastifyInstance {
  const app = Fastify({ logger: false, ...fastifyListenerOptions(ctx.listener) });
  secureFastifyListener(app, ctx.listener);

  registerErrorHandlers(app, {
    // The service's own codes (scoring, tokenization, index) first; Fastify's rejections and the rest by the common table.
    classify: (err) => {
      const c = classify(err);
      return c.code === 'INTERNAL' ? undefined : { status: c.http, code: c.code, message: c.message, clientError: c.clientError };
    },
    onError: (req, c, err) => {
      // Fastify's rejections before a route ran (bad JSON, body too large); the routes count their own.
      const status = (err as { statusCode?: unknown } | undefined)?.statusCode;
      if (typeof status === 'number' && status >= 400 && status < 500 && classify(err).code === 'INTERNAL') ctx.apiMetrics.rejected('http', req.routeOptions.url ?? req.url, c.code);
    },
    onServerError: (req, c) => ctx.logger.error({ route: req.routeOptions.url, err: c.message }, 'HTTP request failed'),
  });

  registerOpsRoutes(app, { registry: ctx.registry, readiness: ctx.readiness, ...(ctx.liveness ? { liveness: ctx.liveness } : {}) });

  const timed = <T>(method: string, work: () => Promise<T>): Promise<T> => ctx.apiMetrics.time('http', method, work, (err) => classify(err).code);
  const scoreRoute = (path: string, parse: (body: unknown) => ScoreInput): void => {
    app.post(path, async (req, reply) => timed(path, async () => scoreView(await ctx.scorer.score(parse(req.body), { signal: clientGone(reply) }))));
  };
  scoreRoute('/v1/score', scoreInputOf);
  scoreRoute('/v1/score/completions', completionsInputOf);
  scoreRoute('/v1/score/chat', chatInputOf);

  const debugOff = (reply: FastifyReply, route: string): FastifyReply =>
    sendError(reply, 404, 'DEBUG_ROUTES_OFF', `${route} is off: it changes or dumps the index; start with --debug-routes to serve it (see SECURITY.md)`);
  app.post('/v1/routing-decisions', async (req, reply: FastifyReply) =>
    !ctx.debugRoutes ? debugOff(reply, 'POST /v1/routing-decisions') : timed('/v1/routing-decisions', async () => {
      const outcome = await ctx.scorer.recordDecision(decisionOf(req.body), { signal: clientGone(reply) });
      return reply.code(201).send({ inserted: outcome.inserted, blocks: outcome.blocks, ttl_ms: outcome.ttlMs });
    }),
  );

  app.get('/v1/stats', async () => timed('/v1/stats', async () => snake(await statsView(ctx.stack, ctx.pods))));
  app.get('/v1/pods', async () => timed('/v1/pods', async () => ({ pods: snake((await statsView(ctx.stack, ctx.pods)).pods) })));
  app.get<{ Params: { pod: string } }>('/v1/pods/:pod/entries', async (req, reply) =>
    !ctx.debugRoutes ? debugOff(reply, 'GET /v1/pods/:pod/entries') : timed('/v1/pods/:pod/entries', async () => {
      const q = validated(DumpQuery, req.query, 'query');
      return snake(await dumpView(ctx.stack, ctx.pods, req.params.pod, q.offset, q.limit));
    }),
  );
  app.get('/v1/analytics', async (req) =>
    timed('/v1/analytics', async () => {
      const q = validated(AnalyticsQuery, req.query, 'query');
      return analyticsDocument({ analytics: ctx.analytics, stack: ctx.stack, pods: ctx.pods, ingestMetrics: ctx.ingestMetrics }, q.top ?? ctx.topPrefixes);
    }),
  );
  // The cache-reuse page and the history it charts, beside the analytics they come from.
  registerReuseRoutes(app, { sources: { analytics: ctx.analytics, stack: ctx.stack, pods: ctx.pods, ingestMetrics: ctx.ingestMetrics }, history: ctx.history, topPrefixes: ctx.topPrefixes, analyticsRoute: false });
  return app;
}

/** Fires when the client hangs up before its answer is written: nobody waits for the tokenization any more. */
function clientGone(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableEnded) controller.abort();
  });
  return controller.signal;
}

function scoreView(o: ScoreOutcome): Record<string, unknown> {
  return {
    block_size: o.blockSize,
    total_blocks: o.totalBlocks,
    prompt_tokens: o.promptTokens,
    tokenization: { source: o.tokenization, cached: o.tokenizationCached },
    scores: o.scores.map((s) => ({ pod: s.pod, score: s.score, normalized: s.normalized, matched_blocks: s.matchedBlocks, tiers: s.tiers, known: s.known })),
  };
}

/** camelCase keys → snake_case, recursively (pod ids and tier names, which are map keys, are kept). */
function snake(value: unknown, mapKeys = false): unknown {
  if (Array.isArray(value)) return value.map((v) => snake(v));
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const key = mapKeys ? k : k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    out[key] = snake(v, MAP_FIELDS.has(k));
  }
  return out;
}

/** Fields whose keys are data (pod ids, model names, tiers), not field names. */
const MAP_FIELDS = new Set(['byModel', 'byPod', 'events', 'tiers']);
