import { createIndexStack, IndexSettingsSchema, IngestMetrics } from '@kvix/kv-ingest';
import { ReuseAnalytics } from '@kvix/scoring';
import Fastify from 'fastify';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { registerReuseRoutes, ReuseHistory, type ReuseSources } from '../src/index.js';

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

function sources(): ReuseSources {
  const ingestMetrics = new IngestMetrics(new Registry());
  const stack = createIndexStack(IndexSettingsSchema.parse({}), ingestMetrics);
  closers.push(() => stack.index.close());
  const analytics = new ReuseAnalytics(16);
  return { analytics, stack, ingestMetrics, pods: { pods: () => [] } };
}

describe('the reuse history', () => {
  it('keeps the last `capacity` samples and answers those after a time', async () => {
    const src = sources();
    const history = new ReuseHistory(src, { intervalMs: 60_000, capacity: 3 });
    for (let i = 0; i < 5; i++) {
      src.analytics.observeScore('m', BigUint64Array.of(1n, 2n), undefined, () => null);
      await history.sample();
      await new Promise((r) => setTimeout(r, 2));
    }
    const all = history.since();
    expect(all).toHaveLength(3);
    expect(all.map((p) => p.byModel['m']!.blocks)).toEqual([6, 8, 10]);
    expect(history.since(all[1]!.t)).toEqual([all[2]]);
  });
});

describe('the page routes', () => {
  async function app(analyticsRoute: boolean): Promise<ReturnType<typeof Fastify>> {
    const src = sources();
    const a = Fastify();
    registerReuseRoutes(a, { sources: src, history: new ReuseHistory(src, { intervalMs: 1000, capacity: 10 }), topPrefixes: 5, analyticsRoute });
    closers.push(() => a.close());
    return a;
  }

  it('redirects /ui to /ui/ (relative, so a path prefix in front keeps working) and serves the page, its script and uPlot', async () => {
    const a = await app(true);
    const redirect = await a.inject('/ui');
    expect(redirect.statusCode).toBe(302);
    expect(redirect.headers.location).toBe('ui/');
    const page = await a.inject('/ui/');
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect(page.body).toContain('src="app.js"');
    for (const asset of ['app.js', 'app.css', 'vendor/uPlot.iife.min.js', 'vendor/uPlot.min.css']) expect((await a.inject(`/ui/${asset}`)).statusCode, asset).toBe(200);
    expect((await a.inject('/ui/../package.json')).statusCode).toBe(404);
  });

  it('serves /v1/analytics in snake_case, keeping model and pod names as keys, only when asked to', async () => {
    const a = await app(true);
    const body = (await a.inject('/v1/analytics')).json() as { scoring: { by_model: object }; index: { by_pod: object } };
    expect(body.scoring).toHaveProperty('by_model');
    expect(body.index).toHaveProperty('by_pod');
    expect((await a.inject('/v1/analytics?top=0')).statusCode).toBe(400);
    expect((await (await app(false)).inject('/v1/analytics')).statusCode).toBe(404);
  });

  it('refuses a history cursor that is not a time', async () => {
    const a = await app(false);
    expect((await a.inject('/v1/analytics/history?since=yesterday')).statusCode).toBe(400);
    expect((await a.inject('/v1/analytics/history')).json()).toEqual({ interval_ms: 1000, points: [] });
  });
});
