import { RequestKeyHasher } from '@kvix/block-keys';
import { DEFAULT_TIER_WEIGHTS, InMemoryIndex } from '@kvix/kv-index';
import { PrefixScorer } from '@kvix/scoring';
import { LocalTokenizerPool } from '@kvix/tokenization';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { buildPipeline, newDecisionTimings, parsePickerConfig, Scheduler, type Candidate, type SchedulingRequest } from '../src/index.js';

const silent = pino({ level: 'silent' });
const MODEL = 'Qwen/Qwen3-0.6B';
const cand = (id: string): Candidate => ({
  endpoint: { id, address: id.split(':')[0]!, port: Number(id.split(':')[1]), name: id, model: MODEL, labels: {} },
  metrics: { waiting: 0, running: 0, kvUsage: 0, blockSize: 16, numGpuBlocks: 1000, loras: [], scrapedAt: 0 },
  inFlight: 0,
});

describe('decision timings', () => {
  const pool = new LocalTokenizerPool({ unlisted: 'bundled', workers: 1 });
  afterAll(() => pool.close());

  it("say where a precise decision's time went: tokenizer call (template, encode, keys on its thread), lookup, scoring, pick", async () => {
    const hasher = new RequestKeyHasher({ blockSize: 16 });
    const index = new InMemoryIndex({ sweepIntervalMs: 0 });
    const scorer = new PrefixScorer({ index, hasher, weights: DEFAULT_TIER_WEIGHTS, tokenizer: pool, maxPromptTokens: 10_000, logger: silent });
    const config = parsePickerConfig({
      plugins: [{ type: 'precise-prefix-cache-scorer' }, { type: 'queue-scorer' }, { type: 'max-score-picker' }],
      schedulingProfiles: [{ name: 'default', plugins: [{ pluginRef: 'precise-prefix-cache-scorer', weight: 3 }, { pluginRef: 'queue-scorer', weight: 2 }, { pluginRef: 'max-score-picker' }] }],
    });
    const scheduler = new Scheduler(buildPipeline(config, { prefixScorer: scorer, logger: silent }), 1);
    const messages = [
      { role: 'system', content: 'You are the dispatcher of a parcel service. '.repeat(30) },
      { role: 'user', content: 'My parcel 4711 is late; where is it now?' },
    ];
    const request: SchedulingRequest = { id: 'r', model: MODEL, prompt: { model: MODEL, prompt: { kind: 'chat', messages } }, headers: {}, cycle: new Map(), timings: newDecisionTimings() };
    const result = await scheduler.schedule(request, [cand('10.0.0.1:8000'), cand('10.0.0.2:8000')]);
    await scheduler.preRequest(request, result);
    const t = request.timings!;
    for (const stage of ['tokenizerCall', 'template', 'encode', 'hash', 'producers'] as const) expect(t[stage], stage).toBeGreaterThan(0);
    for (const stage of ['lookup', 'prefixScore', 'scorers', 'pick'] as const) expect(t[stage], stage).toBeGreaterThanOrEqual(0);
    // The thread's work happened inside the call; the precise scorer's work inside the producers.
    expect(t.template + t.encode + t.hash).toBeLessThanOrEqual(t.tokenizerCall);
    expect(t.tokenizerCall + t.lookup + t.prefixScore).toBeLessThanOrEqual(t.producers);
    // The decision was recorded: the same prompt now scores on the chosen pod.
    const again = await scorer.score({ model: MODEL, prompt: { kind: 'chat', messages } });
    expect(again.scores[0]).toMatchObject({ pod: result.endpoints[0]!.id });
    expect(again.scores[0]!.tiers['speculative']).toBe(again.totalBlocks);
  });
});
