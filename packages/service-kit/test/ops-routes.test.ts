import Fastify from 'fastify';
import { Counter, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { registerOpsRoutes } from '../src/index.js';

describe('ops routes', () => {
  it('serves liveness, readiness that follows the service, and the registry', async () => {
    const registry = new Registry();
    new Counter({ name: 'kvix_test_total', help: 'test', registers: [registry] }).inc(3);
    let ready = false;
    const app = Fastify();
    registerOpsRoutes(app, { registry, readiness: () => ({ ready, detail: { pods: 2 } }) });
    expect((await app.inject('/healthz')).statusCode).toBe(200);
    const notReady = await app.inject('/readyz');
    expect(notReady.statusCode).toBe(503);
    expect(notReady.json()).toEqual({ status: 'not ready', pods: 2 });
    ready = true;
    expect((await app.inject('/readyz')).statusCode).toBe(200);
    const metrics = await app.inject('/metrics');
    expect(metrics.headers['content-type']).toContain('text/plain');
    expect(metrics.body).toContain('kvix_test_total 3');
    await app.close();
  });
});
