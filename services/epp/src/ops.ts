import type { Ingestor, IndexStack } from '@kvix/kv-ingest';
import type { Router } from '@kvix/scheduler';
import { registerOpsRoutes, type Readiness } from '@kvix/service-kit';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';

export interface OpsContext {
  registry: Registry;
  router: Router;
  ingestor: Ingestor | null;
  stack: IndexStack | null;
  readiness: () => Readiness;
}

/** Metrics, probes and a debug API: which endpoints are candidates, and how the scheduler is set up. */
export function buildOpsServer(ctx: OpsContext): FastifyInstance {
  const app = Fastify({ logger: false });
  registerOpsRoutes(app, { registry: ctx.registry, readiness: ctx.readiness });
  app.get('/debug/endpoints', async () => ({ endpoints: ctx.router.registry.status() }));
  app.get('/debug/scheduler', async () => ({ ...ctx.router.scheduler.describe(), fallbacks: ctx.router.config.fallbacks, modelRewrites: ctx.router.config.modelRewrites, objectives: ctx.router.config.objectives, saturation: ctx.router.config.saturation }));
  app.get('/debug/pods', async (_req, reply) => {
    if (!ctx.ingestor || !ctx.stack) return reply.code(404).send({ error: { code: 'NO_EMBEDDED_INDEX', message: 'this EPP scores with a remote indexer; ask it' } });
    const counts = new Map((await ctx.stack.index.podCounts()).map((c) => [c.pod, c]));
    return { pods: ctx.ingestor.podStates().map((p) => ({ ...p, entries: counts.get(p.id)?.entries ?? 0, speculative: counts.get(p.id)?.speculative ?? 0 })) };
  });
  return app;
}
