import { RequestKeyHasher } from '@kvix/block-keys';
import { DEFAULT_TIER_WEIGHTS, InMemoryIndex } from '@kvix/kv-index';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { PrefixScorer, ReuseAnalytics, ScoringError, ScoringMetrics, type ScoreInput } from '../src/index.js';

const MODEL = 'm';
const hasher = new RequestKeyHasher({ blockSize: 4 });
const tokens = (n: number, base = 1): number[] => Array.from({ length: n }, (_, i) => base + i);

function setup(opts: { known?: string[]; now?: () => number } = {}) {
  const index = new InMemoryIndex({ sweepIntervalMs: 0, ...(opts.now ? { now: opts.now } : {}) });
  const registry = new Registry();
  const metrics = new ScoringMetrics(registry);
  const analytics = new ReuseAnalytics(4, metrics, 256);
  const known = new Set(opts.known ?? ['a:1', 'b:1', 'c:1']);
  const scorer = new PrefixScorer({ index, hasher, weights: DEFAULT_TIER_WEIGHTS, tokenizer: null, maxPromptTokens: 1000, isKnownPod: (p) => known.has(p), metrics, analytics, logger: pino({ level: 'silent' }) });
  const hold = async (pod: string, ids: number[], tier = 'gpu', model = MODEL) => index.add(null, hasher.keys(ids, model), [{ pod, tier, speculative: false }]);
  return { index, scorer, hold, registry, analytics };
}

const byTokens = (ids: number[], extra: Partial<ScoreInput> = {}): ScoreInput => ({ model: MODEL, prompt: { kind: 'tokens', tokenIds: ids }, ...extra });

async function rejects(p: Promise<unknown>, code: string): Promise<void> {
  await expect(p).rejects.toBeInstanceOf(ScoringError);
  await expect(p).rejects.toMatchObject({ code });
}

describe('prefix scoring', () => {
  it('scores each pod by its longest prefix, a CPU copy below a GPU copy', async () => {
    const { scorer, hold } = setup();
    const prompt = tokens(32); // 8 blocks of 4
    await hold('a:1', tokens(24)); // 6 blocks on GPU
    await hold('b:1', tokens(32), 'cpu'); // all 8 offloaded to CPU
    await hold('c:1', tokens(8, 500)); // something else entirely
    const out = await scorer.score(byTokens(prompt));
    expect(out.totalBlocks).toBe(8);
    expect(out.tokenization).toBe('request');
    expect(out.scores.map((s) => [s.pod, s.matchedBlocks, +s.score.toFixed(2), s.tiers])).toEqual([
      ['b:1', 8, 6.4, { cpu: 8 }],
      ['a:1', 6, 6, { gpu: 6 }],
    ]);
    expect(out.scores[0]!.normalized).toBeCloseTo(0.8);
  });

  it('returns every candidate, unknown ones flagged and counted, and refuses an empty candidate list', async () => {
    const { scorer, hold, registry } = setup();
    await hold('a:1', tokens(16));
    const out = await scorer.score(byTokens(tokens(16), { candidates: ['b:1', 'a:1', 'ghost:9', 'a:1'] }));
    expect(out.scores.map((s) => [s.pod, s.matchedBlocks, s.known])).toEqual([
      ['a:1', 4, true],
      ['b:1', 0, true],
      ['ghost:9', 0, false],
    ]);
    expect((await registry.getSingleMetric('kvix_scoring_unknown_candidate_pods_total')!.get()).values[0]!.value).toBe(1);
    await rejects(scorer.score(byTokens(tokens(16), { candidates: [] })), 'EMPTY_CANDIDATES');
  });

  it('keys a LoRA adapter\'s prompts apart from the base model\'s, and a cache salt apart from no salt', async () => {
    const { scorer, hold } = setup();
    await hold('a:1', tokens(16), 'gpu', 'sql-lora');
    expect((await scorer.score(byTokens(tokens(16)))).scores).toEqual([]);
    expect((await scorer.score(byTokens(tokens(16), { loraName: 'sql-lora' }))).scores[0]).toMatchObject({ pod: 'a:1', matchedBlocks: 4 });
    expect((await scorer.score(byTokens(tokens(16), { loraName: 'sql-lora', cacheSalt: 'tenant-a' }))).scores).toEqual([]);
  });

  it('makes a routed prompt score at once on the chosen pod (and the prefill pod), until the TTL passes', async () => {
    let now = 1_000;
    const { scorer } = setup({ now: () => now });
    const out = await scorer.recordDecision({ model: MODEL, prompt: { kind: 'tokens', tokenIds: tokens(20) }, pod: 'a:1', prefillPod: 'b:1', ttlMs: 500 });
    expect(out).toEqual({ inserted: 10, blocks: 5, ttlMs: 500 });
    const scored = await scorer.score(byTokens(tokens(20)));
    expect(scored.scores.map((s) => [s.pod, s.matchedBlocks, s.tiers])).toEqual([
      ['a:1', 5, { speculative: 5 }],
      ['b:1', 5, { speculative: 5 }],
    ]);
    now += 501;
    expect((await scorer.score(byTokens(tokens(20)))).scores).toEqual([]);
  });

  it('refuses bad input with a code: token ids, length, text without a tokenizer, pods, TTL', async () => {
    const { scorer } = setup();
    await rejects(scorer.score(byTokens([1, -2, 3])), 'INVALID_REQUEST');
    await rejects(scorer.score(byTokens([1, 2.5])), 'INVALID_REQUEST');
    await rejects(scorer.score(byTokens(tokens(1001))), 'PROMPT_TOO_LONG');
    await rejects(scorer.score({ model: MODEL, prompt: { kind: 'completion', prompt: 'hello' } }), 'NO_TOKENIZER');
    await rejects(scorer.score(byTokens(tokens(8), { model: '' })), 'INVALID_REQUEST');
    await rejects(scorer.recordDecision({ model: MODEL, prompt: { kind: 'tokens', tokenIds: tokens(8) }, pod: ' ' }), 'INVALID_POD');
    await rejects(scorer.recordDecision({ model: MODEL, prompt: { kind: 'tokens', tokenIds: tokens(8) }, pod: 'a:1', ttlMs: -5 }), 'INVALID_REQUEST');
    await rejects(scorer.score(byTokens(tokens(8), { multimodal: [{ identifier: 'img', offset: 2, length: 0 }] })), 'INVALID_REQUEST');
  });

  it('refuses a multimodal placeholder that runs past the end of the prompt', async () => {
    const { scorer } = setup();
    await rejects(scorer.score(byTokens(tokens(40), { multimodal: [{ identifier: 'img', offset: 30, length: 50 }] })), 'INVALID_REQUEST');
    await rejects(scorer.recordDecision({ model: MODEL, prompt: { kind: 'tokens', tokenIds: tokens(40) }, pod: 'a:1', multimodal: [{ identifier: 'img', offset: 40, length: 1 }] }), 'INVALID_REQUEST');
    const ok = await scorer.score(byTokens(tokens(40), { multimodal: [{ identifier: 'img', offset: 30, length: 10 }] }));
    expect(ok.totalBlocks).toBe(10);
  });
});

describe('cache-reuse analytics', () => {
  it('reports hit ratios per model and per routed pod and tier, counting misses', async () => {
    const { scorer, hold, analytics, registry } = setup();
    await hold('a:1', tokens(16)); // 4 of the 8 blocks
    await scorer.score(byTokens(tokens(32)));
    await scorer.recordDecision({ model: MODEL, prompt: { kind: 'tokens', tokenIds: tokens(32) }, pod: 'a:1' });
    const snap = analytics.snapshot();
    expect(snap.scoring.byModel[MODEL]).toMatchObject({ requests: 1, blocks: 8, hitBlocks: 4, blockHitRatio: 0.5, tiers: { gpu: 4 } });
    expect(snap.routing.byPod['a:1']).toMatchObject({ requests: 1, blocks: 8, hitBlocks: 4, tiers: { gpu: 4 } });
    const routed = (await registry.getSingleMetric('kvix_scoring_routed_blocks_total')!.get()).values;
    expect(Object.fromEntries(routed.map((v) => [v.labels['tier'], v.value]))).toEqual({ gpu: 4, miss: 4 });
    expect(await registry.metrics()).toMatch(/^llm_d_epp_prefix_indexer_hit_ratio_sum\{plugin_name="precise-prefix-cache-scorer",plugin_type="precise-prefix-cache-scorer"\} 0\.5$/m);
    expect(await registry.metrics()).toMatch(/^inference_extension_prefix_indexer_hit_ratio_sum\{[^}]*\} 0\.5$/m);
  });

  it('lists the deepest prefix many requests share, not its shallower checkpoints or one-off prompts', async () => {
    const { scorer, analytics } = setup();
    const system = tokens(160, 10_000); // 40 blocks shared by every request
    for (let i = 0; i < 30; i++) await scorer.score(byTokens([...system, ...tokens(100, 50_000 + i * 1000)]));
    await scorer.score(byTokens(tokens(64, 900_000))); // a prompt seen once
    const top = analytics.snapshot().topPrefixes;
    expect(top[0]).toMatchObject({ blocks: 32, tokens: 128, requests: 30, model: MODEL });
    expect(top.some((p) => p.blocks < 32 && p.requests >= 30)).toBe(false);
    expect(top.some((p) => p.requests < 2)).toBe(false);
  });
});

describe('prompts tokenized by the service', () => {
  it('use the request keys the tokenizer computed with the ids (salted, LoRA-rooted) and say where the time went', async () => {
    const { LocalTokenizerPool } = await import('@kvix/tokenization');
    const pool = new LocalTokenizerPool({ unlisted: 'bundled', workers: 0 });
    try {
      const index = new InMemoryIndex({ sweepIntervalMs: 0 });
      const hasher16 = new RequestKeyHasher({ blockSize: 16 });
      const scorer = new PrefixScorer({ index, hasher: hasher16, weights: DEFAULT_TIER_WEIGHTS, tokenizer: pool, maxPromptTokens: 10_000, logger: pino({ level: 'silent' }) });
      const messages = [
        { role: 'system', content: 'You route parcels. '.repeat(40) },
        { role: 'user', content: 'Where is parcel 12345? It was due yesterday.' },
      ];
      const model = 'Qwen/Qwen3-0.6B';
      for (const extra of [{}, { cacheSalt: 'tenant-a' }, { loraName: 'my-adapter' }]) {
        const out = await scorer.score({ model, prompt: { kind: 'chat', messages }, ...extra });
        const ids = (await pool.tokenize(model, { kind: 'chat', messages })).tokenIds;
        const salt = (extra as { cacheSalt?: string }).cacheSalt;
        const root = (extra as { loraName?: string }).loraName ?? model;
        expect(Array.from(out.requestKeys)).toEqual(Array.from(hasher16.keys(ids, root, salt ? { extras: [[salt]] } : {})));
        expect(out.timings.tokenizeCallMs).toBeGreaterThan(0);
        expect(out.timings.templateMs + out.timings.encodeMs).toBeGreaterThan(0);
      }
    } finally {
      await pool.close();
    }
  });
});
