import { context, INVALID_SPAN_CONTEXT, propagation, trace } from '@opentelemetry/api';
import { describe, expect, it } from 'vitest';
import { RequestTrace, Sampled, spanIfTracing, traceHeaders, withSpan } from '../src/index.js';

describe('tracing without an SDK (a service with no OTEL_* configuration)', () => {
  it('runs the work, records nothing and adds no headers', async () => {
    expect(await withSpan('x', {}, async (span) => (span.isRecording() ? 'recording' : 'no-op'))).toBe('no-op');
    const t = RequestTrace.start('gateway', 'POST', '/v1/completions', { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' });
    expect(await t.run(async () => trace.getActiveSpan()?.isRecording() ?? false)).toBe(false);
    expect(t.upstream('10.0.0.1:8000', 0)).toEqual({});
    t.end(200);
    t.end(500); // idempotent
    expect(traceHeaders(trace.wrapSpanContext(INVALID_SPAN_CONTEXT))).toEqual({});
  });

  it('starts no span outside a trace under way (index operations from a debug route)', async () => {
    let active: unknown = 'unset';
    await spanIfTracing('kvix.index.lookup', {}, async () => {
      active = trace.getActiveSpan();
    });
    expect(active).toBeUndefined();
    expect(propagation.fields()).toEqual([]);
    expect(context.active()).toBeDefined();
  });

  it('a failure still propagates through a span', async () => {
    await expect(withSpan('x', {}, () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
  });
});

describe('sampling background work', () => {
  it('takes every batch at ratio 1, none at 0, and an even share between', () => {
    const count = (ratio: number): number => {
      const s = new Sampled(ratio);
      let n = 0;
      for (let i = 0; i < 1000; i++) if (s.next()) n++;
      return n;
    };
    expect(count(1)).toBe(1000);
    expect(count(0)).toBe(0);
    expect(count(0.01)).toBe(10);
    expect(count(0.25)).toBe(250);
  });
});
