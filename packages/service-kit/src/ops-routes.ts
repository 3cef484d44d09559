import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';

export interface Readiness {
  ready: boolean;
  /** Why not (or what is ready), shown by /readyz. */
  detail?: Record<string, unknown>;
}

export interface OpsRoutesOptions {
  registry: Registry;
  readiness: () => Readiness;
  /**
   * What the process needs to be worth keeping alive (a tokenization path whose threads keep
   * dying is not): /healthz answers 503 with the detail when not ready, so Kubernetes restarts it.
   */
  liveness?: () => Readiness;
}

/**
 * The routes Kubernetes probes and Prometheus scrape: /healthz (the process serves, and what it
 * needs still works), /readyz (503 until the service can answer correctly), /metrics.
 */
export function registerOpsRoutes(app: FastifyInstance, options: OpsRoutesOptions): void {
  app.get('/healthz', async (_req, reply) => {
    const live = options.liveness?.() ?? { ready: true };
    return reply.code(live.ready ? 200 : 503).send({ status: live.ready ? 'ok' : 'failing', ...(live.detail ?? {}) });
  });
  app.get('/readyz', async (_req, reply) => {
    const r = options.readiness();
    return reply.code(r.ready ? 200 : 503).send({ status: r.ready ? 'ready' : 'not ready', ...(r.detail ?? {}) });
  });
  app.get('/metrics', async (_req, reply) => {
    const body = await options.registry.metrics();
    return reply.header('content-type', options.registry.contentType).send(body);
  });
}
