import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { FastHistogram } from '../src/index.js';

const LABELS = ['model_name', 'target_model_name', 'priority'] as const;
type L = (typeof LABELS)[number];
const BUCKETS = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.1, 1];

function pair(): { plain: Histogram<L>; fast: FastHistogram<L>; registries: [Registry, Registry] } {
  const a = new Registry();
  const b = new Registry();
  const config = { name: 'kvix_test_seconds', help: 'A test histogram.', labelNames: LABELS, buckets: BUCKETS };
  return { plain: new Histogram({ ...config, registers: [a] }), fast: new FastHistogram({ ...config, registers: [b] }), registries: [a, b] };
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 32;
  };
}

describe('FastHistogram', () => {
  it('exposes exactly what prom-client’s Histogram does for the same observations, through reset, zero and remove', async () => {
    const { plain, fast, registries } = pair();
    const random = rng(7);
    const labelSets: Partial<Record<L, string | number>>[] = [
      { model_name: 'a', target_model_name: 'a', priority: '0' },
      { model_name: 'a', target_model_name: 'a', priority: 0 },
      { model_name: 'a', target_model_name: 'b' },
      { model_name: 'a', target_model_name: 'b', priority: undefined },
      { model_name: 'x,y:z', target_model_name: '\u0000', priority: '1' },
      {},
    ];
    const values = [0, 0.00005, 0.0001, 0.0003, 0.001, 0.0099, 0.5, 1, 2, 1e9];
    for (let i = 0; i < 5000; i++) {
      const labels = labelSets[Math.floor(random() * labelSets.length)]!;
      const value = values[Math.floor(random() * values.length)]! * (random() < 0.5 ? 1 : 1.0001);
      plain.observe(labels as never, value);
      fast.observe(labels as never, value);
      if (i === 2000) for (const h of [plain, fast]) h.reset();
      if (i === 3000) for (const h of [plain, fast]) h.zero({ model_name: 'a', target_model_name: 'a', priority: '0' });
      if (i === 4000) for (const h of [plain, fast]) h.remove({ model_name: 'a', target_model_name: 'b' });
    }
    plain.observe(3);
    fast.observe(3);
    expect(await registries[1].metrics()).toBe(await registries[0].metrics());
    expect(await registries[1].getMetricsAsJSON()).toEqual(await registries[0].getMetricsAsJSON());
  });

  it('refuses what prom-client refuses: an unknown label, a value that is not a finite number', () => {
    const { fast } = pair();
    fast.observe({ model_name: 'a' }, 1);
    expect(() => fast.observe({ model_name: 'a', nope: 'x' } as never, 1)).toThrow(/not included in initial labelset/);
    expect(() => fast.observe({ model_name: 'a' }, Number.NaN)).toThrow(/not a valid number/);
    expect(() => fast.observe({ model_name: 'a' }, Number.POSITIVE_INFINITY)).toThrow(/not a valid number/);
  });

  it('keeps timers and exemplars working', async () => {
    const registry = new Registry();
    const h = new FastHistogram<'op'>({ name: 'kvix_timer_seconds', help: 'timer', labelNames: ['op'], buckets: [1, 10], registers: [registry] });
    h.startTimer({ op: 'x' })();
    expect(await registry.metrics()).toContain('kvix_timer_seconds_count{op="x"} 1');
    const openMetrics = new Registry();
    openMetrics.setContentType(Registry.OPENMETRICS_CONTENT_TYPE as never);
    const e = new FastHistogram<'op'>({ name: 'kvix_exemplar_seconds', help: 'exemplar', labelNames: ['op'], buckets: [1], enableExemplars: true, registers: [openMetrics] });
    // Exemplar labels are their own label set (prom-client types them as the metric's).
    e.observe({ labels: { op: 'y' }, value: 0.5, exemplarLabels: { trace_id: 'abc' } } as never);
    const text = await openMetrics.metrics();
    expect(text).toContain('kvix_exemplar_seconds_count{op="y"} 1');
    expect(text).toContain('trace_id="abc"');
  });
});
