import { createIndexStack, IndexSettingsSchema, IngestMetrics } from '@kvix/kv-ingest';
import { ReuseAnalytics } from '@kvix/scoring';
import Fastify from 'fastify';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { analyticsView, registerReuseRoutes, ReuseHistory, type ReuseSources, type ReuseTallies } from '../src/index.js';

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

function sources(): ReuseSources & { analytics: ReuseAnalytics } {
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

describe('the analytics view', () => {
  it('of one process reads speculation from its own index and names no workers', async () => {
    const src = sources();
    await src.stack.index.add(null, BigUint64Array.of(1n, 2n), [{ pod: 'a:1', tier: 'gpu', speculative: false }]);
    await src.stack.index.add(null, BigUint64Array.of(3n), [{ pod: 'a:1', tier: 'gpu', speculative: true }]);
    const view = await analyticsView(src, 5);
    expect(view).not.toHaveProperty('workers');
    expect(view.index.entries).toBe(3);
    expect(view.index.byPod).toEqual({ 'a:1': { entries: 3, speculative: 1 } });
    expect(view.speculation).toMatchObject({ active: 1, confirmed: 0, expired: 0 });
  });

  it("of tallies counted by routing workers adds their speculative entries to the index's confirmed ones and names the workers", async () => {
    const src = sources();
    await src.stack.index.add(null, BigUint64Array.of(1n, 2n), [{ pod: 'a:1', tier: 'gpu', speculative: false }]);
    const routed: ReuseTallies = {
      snapshot: async (top) => ({
        ...src.analytics.snapshot(top),
        speculation: { active: 3, confirmed: 4, expired: 1, byPod: { 'a:1': 1, 'b:1': 2 }, confirmationBuckets: [{ le: 0.05, count: 3 }, { le: 0.1, count: 4 }, { le: Number.POSITIVE_INFINITY, count: 4 }] },
        workers: { included: ['1', '2'], missing: ['3'] },
      }),
    };
    const view = await analyticsView({ ...src, analytics: routed }, 5);
    expect(view.workers).toEqual({ included: ['1', '2'], missing: ['3'] });
    expect(view.index.entries).toBe(2 + 3);
    expect(view.index.byPod).toEqual({ 'a:1': { entries: 3, speculative: 1 }, 'b:1': { entries: 2, speculative: 2 } });
    expect(view.speculation).toEqual({ active: 3, confirmed: 4, expired: 1, accuracy: 0.8, confirmationSeconds: { count: 4, p50: 0.05, p90: 0.1, p99: 0.1 } });
  });
});
