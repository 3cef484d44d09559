import { createIndexStack, IndexSettingsSchema, IngestMetrics } from '@kvix/kv-ingest';
import { PrefixScorer } from '@kvix/scoring';
import { startRedis, waitFor } from '@kvix/test-support';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { buildPipeline, parsePickerConfig, Scheduler, type Candidate, type EndpointMetrics, type SchedulingRequest } from '../src/index.js';

const silent = pino({ level: 'silent' });
const metrics = (waiting: number): EndpointMetrics => ({ waiting, running: 0, kvUsage: 0, blockSize: 16, numGpuBlocks: 1000, loras: [], scrapedAt: 0 });
const cand = (id: string, waiting: number): Candidate => ({ endpoint: { id, address: id.split(':')[0]!, port: Number(id.split(':')[1]), name: id, model: 'm', labels: {} }, metrics: metrics(waiting), inFlight: 0 });
const tokens = Array.from({ length: 64 }, (_, i) => 100 + i);
const request = (): SchedulingRequest => ({ id: 'r', model: 'm', prompt: { model: 'm', prompt: { kind: 'tokens', tokenIds: tokens } }, headers: {}, cycle: new Map() });

describe('precise prefix scoring on a Redis index', () => {
  it('routes on load alone while Redis is away, and on the cache again once it is back', async () => {
    const redis = await startRedis();
    try {
      const stack = createIndexStack(IndexSettingsSchema.parse({ blockSize: 16, redis: { url: redis.url, sweepIntervalMs: 0 } }), new IngestMetrics(new Registry()));
      const errors: string[] = [];
      const scorer = new PrefixScorer({ index: stack.index, hasher: stack.hasher, weights: stack.weights, tokenizer: null, maxPromptTokens: 10_000, logger: silent });
      const config = parsePickerConfig({
        plugins: [{ type: 'precise-prefix-cache-scorer' }, { type: 'queue-scorer' }, { type: 'max-score-picker' }],
        schedulingProfiles: [{ name: 'default', plugins: [{ pluginRef: 'precise-prefix-cache-scorer', weight: 3 }, { pluginRef: 'queue-scorer', weight: 1 }, { pluginRef: 'max-score-picker' }] }],
      });
      const scheduler = new Scheduler(buildPipeline(config, { prefixScorer: scorer, logger: silent, onPrefixError: (code) => errors.push(code) }), 1);
      // a:1 holds the prompt but has a queue; b:1 is idle and holds nothing.
      const candidates = [cand('10.0.0.1:8000', 4), cand('10.0.0.2:8000', 0)];
      const pick = async () => (await scheduler.schedule(request(), candidates)).endpoints[0]!.id;
      await waitFor(() => stack.status.isUp, 10_000, 'redis');
      await stack.index.add(null, stack.hasher.keys(tokens, 'm'), [{ pod: '10.0.0.1:8000', tier: 'gpu', speculative: false }]);
      expect(await pick()).toBe('10.0.0.1:8000');

      await redis.stop();
      await waitFor(() => !stack.status.isUp, 10_000, 'redis to be seen gone');
      expect(await pick()).toBe('10.0.0.2:8000');
      expect(errors).toContain('BACKEND_UNAVAILABLE');

      // A persistent-less Redis comes back empty: the cache is known again once re-announced.
      await redis.start();
      await waitFor(() => stack.status.isUp, 10_000, 'redis to return');
      await stack.index.add(null, stack.hasher.keys(tokens, 'm'), [{ pod: '10.0.0.1:8000', tier: 'gpu', speculative: false }]);
      expect(await pick()).toBe('10.0.0.1:8000');
      await stack.index.close();
    } finally {
      await redis.dispose();
    }
  });
});
