import type { Ingestor, IndexStack } from '@kvix/kv-ingest';
import { registerReuseRoutes, type ReuseHistory, type ReuseSources } from '@kvix/reuse-page';
import type { Replication } from '@kvix/replication';
import type { Router } from '@kvix/scheduler';
import { fastifyListenerOptions, registerErrorHandlers, registerOpsRoutes, secureFastifyListener, sendError, type HttpListenerSettings, type Readiness } from '@kvix/service-kit';
import type { PrefixScorer } from '@kvix/scoring';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { z } from 'zod';

const ScoreBody = z
  .object({
    model: z.string().min(1),
    prompt: z.string().optional(),
    messages: z.array(z.object({ role: z.string().min(1), content: z.string() }).strict()).min(1).optional(),
    tokenIds: z.array(z.number().int().min(0)).min(1).optional(),
  })
  .strict()
  .refine((b) => [b.prompt, b.messages, b.tokenIds].filter((x) => x !== undefined).length === 1, 'give exactly one of prompt, messages, tokenIds');

export interface OpsContext {
  registry: Registry;
  router: Router;
  ingestor: Ingestor | null;
  stack: IndexStack | null;
  replication: Replication | null;
  /** The embedded index's scorer (null with a remote indexer). */
  scorer: PrefixScorer | null;
  /** Pods discovery knows (a follower has no ingestor to ask). */
  discoveredPods: () => string[];
  readiness: () => Readiness;
  liveness?: () => Readiness;
  /** With the embedded index: the cache-reuse analytics (/v1/analytics) and the /ui page charting their history. */
  reuse: { sources: ReuseSources; history: ReuseHistory; topPrefixes: number } | null;
  /** Where a server fault of the debug API is logged. */
  logger?: Logger;
  /** Limits, TLS and bearer token of the listener. */
  listener: HttpListenerSettings;
  /** Serve POST /debug/score (it tells anyone who can reach it how much of any text each pod holds). */
  debugRoutes: boolean;
}

/** Metrics, probes and a debug API: which endpoints are candidates, and how the scheduler is set up. */
export function buildOpsServer(ctx: OpsContext): FastifyInstance {
  const app = Fastify({ logger: false, ...fastifyListenerOptions(ctx.listener) });
  secureFastifyListener(app, ctx.listener);
  // Unknown model, prompt too long, bad JSON: 4xx with the common body, never a 500.
  registerErrorHandlers(app, { onServerError: (req, c) => ctx.logger?.error({ route: req.routeOptions.url, err: c.message }, 'debug API request failed') });
  registerOpsRoutes(app, { registry: ctx.registry, readiness: ctx.readiness, ...(ctx.liveness ? { liveness: ctx.liveness } : {}) });
  app.get('/debug/endpoints', async () => ({ endpoints: ctx.router.registry.status() }));
  app.get('/debug/replication', async (_req, reply) => (ctx.replication ? ctx.replication.status() : sendError(reply, 404, 'NO_REPLICATION', 'this EPP runs alone (no --nats-url)')));
  app.get('/debug/scheduler', async () => ({ ...ctx.router.scheduler.describe(), fallbacks: ctx.router.config.fallbacks, ...ctx.router.director.describePolicies(), saturation: ctx.router.config.saturation }));
  // What this replica's index says of a prompt, pod by pod: active-active replicas must agree.
  app.post('/debug/score', async (req, reply) => {
    if (!ctx.debugRoutes) return sendError(reply, 404, 'DEBUG_ROUTES_OFF', 'POST /debug/score is off: it reveals what the index holds for any text; start with --debug-routes to serve it (see SECURITY.md)');
    if (!ctx.scorer) return sendError(reply, 404, 'NO_EMBEDDED_INDEX', 'this EPP scores with a remote indexer; ask it');
    const parsed = ScoreBody.safeParse(req.body);
    if (!parsed.success) return sendError(reply, 400, 'INVALID_REQUEST', parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '));
    const b = parsed.data;
    const prompt = b.tokenIds ? { kind: 'tokens' as const, tokenIds: b.tokenIds } : b.messages ? { kind: 'chat' as const, messages: b.messages } : { kind: 'completion' as const, prompt: b.prompt! };
    const out = await ctx.scorer.score({ model: b.model, prompt });
    return { totalBlocks: out.totalBlocks, promptTokens: out.promptTokens, scores: out.scores.map((s) => ({ pod: s.pod, score: s.score, normalized: s.normalized, matchedBlocks: s.matchedBlocks, tiers: s.tiers })) };
  });
  app.get('/debug/pods', async (_req, reply) => {
    if (ctx.stack && !ctx.ingestor) {
      const counts = new Map((await ctx.stack.index.podCounts()).map((c) => [c.pod, c]));
      return { pods: ctx.discoveredPods().map((id) => ({ id, source: 'index stream', entries: counts.get(id)?.entries ?? 0, speculative: counts.get(id)?.speculative ?? 0 })) };
    }
    if (!ctx.ingestor || !ctx.stack) return sendError(reply, 404, 'NO_EMBEDDED_INDEX', 'this EPP scores with a remote indexer; ask it');
    const counts = new Map((await ctx.stack.index.podCounts()).map((c) => [c.pod, c]));
    return { pods: ctx.ingestor.podStates().map((p) => ({ ...p, entries: counts.get(p.id)?.entries ?? 0, speculative: counts.get(p.id)?.speculative ?? 0 })) };
  });
  if (ctx.reuse) registerReuseRoutes(app, { ...ctx.reuse, analyticsRoute: true });
  return app;
}
