import { requestBlockExtras } from '@kvix/block-keys';
import { scoreLookup } from '@kvix/kv-index';
import type { IndexStack, Ingestor } from '@kvix/kv-ingest';
import type { Replication } from '@kvix/replication';
import { fastifyListenerOptions, registerErrorHandlers, registerOpsRoutes, secureFastifyListener, sendError, type HttpListenerSettings } from '@kvix/service-kit';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import type { Registry } from 'prom-client';
import { z } from 'zod';

const LookupBody = z
  .object({
    /** Token ids of the prompt, exactly as the engine will hash them. */
    tokens: z.array(z.number().int().min(0).max(0xffffffff)).min(1),
    /** The model (or LoRA adapter name) keys are chained from. */
    model: z.string().min(1),
    cacheSalt: z.string().optional(),
    /** Only score these pods. */
    pods: z.array(z.string().min(1)).optional(),
  })
  .strict();

const DumpQuery = z.object({ offset: z.coerce.number().int().min(0).default(0), limit: z.coerce.number().int().min(1).max(10_000).default(100) }).strict();

export interface HttpContext {
  stack: IndexStack;
  ingestor: Ingestor;
  registry: Registry;
  replication?: Replication | null;
  /** Limits, TLS and bearer token of the listener (defaults: 1 MiB bodies, no TLS, no token). */
  listener?: HttpListenerSettings;
  /** Serve the routes that reveal what the index holds for given tokens, and dump a pod's entries. */
  debugRoutes?: boolean;
}

const DEFAULT_LISTENER: HttpListenerSettings = { maxBodyBytes: 1024 * 1024, maxConnections: 256, headersTimeoutMs: 10_000, bodyTimeoutMs: 30_000 };

/** Invalid query or body: 400 INVALID_REQUEST. */
class BadRequest extends Error {
  readonly code = 'INVALID_REQUEST';
}

/** Probes, metrics and a debug API to see what the index holds and how far each pod's stream got. */
export function buildHttpServer(ctx: HttpContext): FastifyInstance {
  const listener = ctx.listener ?? DEFAULT_LISTENER;
  const app = Fastify({ logger: false, ...fastifyListenerOptions(listener) });
  secureFastifyListener(app, listener);
  registerErrorHandlers(app);
  const debugOff = (reply: FastifyReply, route: string): FastifyReply =>
    sendError(reply, 404, 'DEBUG_ROUTES_OFF', `${route} is off: it reveals what the index holds; start with --debug-routes to serve it (see SECURITY.md)`);

  registerOpsRoutes(app, {
    registry: ctx.registry,
    readiness: () => {
      const pods = ctx.ingestor.podStates();
      const replication = ctx.replication ? ctx.replication.ready() : true;
      return { ready: ctx.ingestor.ready && replication, detail: { pods: pods.length, connected: pods.filter((p) => p.connected).length, replication } };
    },
  });

  app.get('/debug/pods', async () => {
    const counts = new Map((await ctx.stack.index.podCounts()).map((c) => [c.pod, c]));
    return {
      pods: ctx.ingestor.podStates().map((p) => ({ ...p, entries: counts.get(p.id)?.entries ?? 0, speculative: counts.get(p.id)?.speculative ?? 0 })),
    };
  });

  app.get('/debug/index', async () => ctx.stack.index.stats());

  app.get('/debug/replication', async (_req, reply) => (ctx.replication ? ctx.replication.status() : sendError(reply, 404, 'NO_REPLICATION', 'not replicating (no --nats-url)')));

  app.get<{ Params: { pod: string } }>('/debug/pods/:pod/entries', async (req, reply) => {
    if (ctx.debugRoutes !== true) return debugOff(reply, 'GET /debug/pods/:pod/entries');
    const query = parse(DumpQuery, req.query);
    const known = ctx.ingestor.podStates().some((p) => p.id === req.params.pod);
    const page = await ctx.stack.index.dumpPod(req.params.pod, query.offset, query.limit);
    if (!known && page.total === 0) return sendError(reply, 404, 'UNKNOWN_POD', `unknown pod ${req.params.pod}`);
    return {
      pod: req.params.pod,
      total: page.total,
      offset: query.offset,
      items: page.items.map(({ key, entry }) => ({ key: key.toString(), tier: entry.tier, speculative: entry.speculative, ...(entry.group !== undefined ? { group: entry.group } : {}) })),
    };
  });

  app.post('/debug/lookup', async (req, reply) => {
    if (ctx.debugRoutes !== true) return debugOff(reply, 'POST /debug/lookup');
    const body = parse(LookupBody, req.body);
    const { hasher } = ctx.stack;
    const extras = body.cacheSalt ? requestBlockExtras({ tokenCount: body.tokens.length, blockSize: hasher.blockSize, cacheSalt: body.cacheSalt }) : null;
    const keys = hasher.keys(body.tokens, body.model, { extras });
    const result = await ctx.stack.index.lookup(keys, { earlyStop: false, ...(body.pods ? { pods: body.pods } : {}) });
    const scores = scoreLookup(result, keys.length, ctx.stack.weights, body.pods);
    scores.sort((a, b) => b.score - a.score || a.pod.localeCompare(b.pod));
    return { model: body.model, blockSize: hasher.blockSize, totalBlocks: keys.length, pods: scores };
  });

  return app;
}

function parse<T extends z.ZodType>(schema: T, value: unknown): z.output<T> {
  const r = schema.safeParse(value ?? {});
  if (!r.success) throw new BadRequest(r.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '));
  return r.data;
}
