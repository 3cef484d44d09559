import Fastify from 'fastify';
import { Counter, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { fastifyListenerOptions, registerOpsRoutes, requireBearerToken } from '../src/index.js';

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

  it('fails liveness with the detail while what the process needs is dead, so Kubernetes restarts it', async () => {
    let live = false;
    const app = Fastify();
    registerOpsRoutes(app, { registry: new Registry(), readiness: () => ({ ready: true }), liveness: () => ({ ready: live, detail: { tokenization: { ok: live } } }) });
    const dead = await app.inject('/healthz');
    expect(dead.statusCode).toBe(503);
    expect(dead.json()).toEqual({ status: 'failing', tokenization: { ok: false } });
    live = true;
    expect((await app.inject('/healthz')).statusCode).toBe(200);
    await app.close();
  });
});

describe('listener security', () => {
  it('asks for the bearer token everywhere but the probes, comparing it in constant time', async () => {
    const app = Fastify();
    requireBearerToken(app, 's3cret');
    registerOpsRoutes(app, { registry: new Registry(), readiness: () => ({ ready: true }) });
    app.get('/debug/x', async () => ({ ok: true }));
    expect((await app.inject('/debug/x')).statusCode).toBe(401);
    expect((await app.inject('/debug/x')).json()).toEqual({ error: { code: 'UNAUTHENTICATED', message: expect.any(String) } });
    expect((await app.inject({ url: '/metrics', headers: { authorization: 'Bearer s3cre' } })).statusCode).toBe(401);
    expect((await app.inject({ url: '/metrics', headers: { authorization: 'Bearer s3cret' } })).statusCode).toBe(200);
    expect((await app.inject('/healthz')).statusCode).toBe(200);
    expect((await app.inject('/readyz?verbose=1')).statusCode).toBe(200);
    await app.close();
  });

  it('turns limits into server options: timeouts checked often, a headers timeout never above the body timeout', () => {
    const options = fastifyListenerOptions({ maxBodyBytes: 2048, maxConnections: 3, headersTimeoutMs: 5000, bodyTimeoutMs: 2000 });
    expect(options).toEqual({ bodyLimit: 2048, requestTimeout: 2000, http: { headersTimeout: 2000, connectionsCheckingInterval: 1000 } });
  });
});
