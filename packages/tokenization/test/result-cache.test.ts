import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  CachingTokenizer,
  chatPromptFromBody,
  LocalTokenizerPool,
  TokenizationError,
  type PromptInput,
  type PromptTokenizer,
  type TokenizedPrompt,
  type TokenizeOptions,
} from '../src/index.js';
import { qwen3 } from './fixtures.js';

/** A real tokenizer behind a counter, so tests can see which calls reached it. */
class CountingTokenizer implements PromptTokenizer {
  calls: { model: string; input: PromptInput; options: TokenizeOptions | undefined }[] = [];
  constructor(private readonly inner: PromptTokenizer) {}
  tokenize(model: string, input: PromptInput, options?: TokenizeOptions): Promise<TokenizedPrompt> {
    this.calls.push({ model, input, options });
    return this.inner.tokenize(model, input, options);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Answers only when told to, so tests control when a call is in flight. */
class GatedTokenizer implements PromptTokenizer {
  calls: { signal: AbortSignal | undefined }[] = [];
  private gates: { open(result: TokenizedPrompt): void; fail(err: Error): void }[] = [];
  tokenize(_model: string, _input: PromptInput, options?: TokenizeOptions): Promise<TokenizedPrompt> {
    this.calls.push({ signal: options?.signal });
    return new Promise((resolve, reject) => this.gates.push({ open: resolve, fail: reject }));
  }
  answer(tokens: number[]): void {
    this.gates.shift()!.open({ tokenIds: Uint32Array.from(tokens), multimodal: [{ identifier: 'img', offset: 0, length: 1 }], cacheSalt: null, source: 'render', cached: false });
  }
  fail(err: Error): void {
    this.gates.shift()!.fail(err);
  }
  async close(): Promise<void> {}
}

const MODEL = 'qwen';
let pool: LocalTokenizerPool;

beforeAll(async () => {
  pool = new LocalTokenizerPool({ models: { [MODEL]: 'Qwen/Qwen3-0.6B', other: 'Qwen/Qwen3-0.6B' }, workers: 0 });
  await pool.warmUp();
});

afterAll(async () => {
  await pool.close();
});

function cached(): { cache: CachingTokenizer; counter: CountingTokenizer } {
  const counter = new CountingTokenizer(pool);
  return { cache: new CachingTokenizer(counter), counter };
}

const chat: PromptInput = {
  kind: 'chat',
  messages: [
    { role: 'system', content: 'You are helpful.' },
    { role: 'user', content: 'What is the capital of France?' },
  ],
};

describe('an exact result cache', () => {
  it('answers a repeated request from the cache with exactly the fresh result', async () => {
    const { cache, counter } = cached();
    const first = await cache.tokenize(MODEL, chat, { cacheSalt: 's1' });
    const second = await cache.tokenize(MODEL, chat, { cacheSalt: 's1' });
    const fresh = await pool.tokenize(MODEL, chat, { cacheSalt: 's1' });
    expect(counter.calls).toHaveLength(1);
    expect(first.cached).toBe(false);
    expect(second.cached).toBe(true);
    expect(Array.from(second.tokenIds)).toEqual(Array.from(fresh.tokenIds));
    expect({ ...second, tokenIds: null, cached: null }).toEqual({ ...fresh, tokenIds: null, cached: null, timings: undefined });
    // Only the call that tokenized says where its time went.
    expect(second.timings).toBeUndefined();
    expect(fresh.timings?.totalMs).toBeGreaterThanOrEqual(0);
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 1, entries: 1 });
  });

  it('never lets requests that differ in model, salt or any option share an entry', async () => {
    const { cache, counter } = cached();
    const tool = (order: 'ab' | 'ba') => ({
      type: 'function',
      function: { name: 'f', description: 'd', parameters: order === 'ab' ? { a: 1, b: 2 } : { b: 2, a: 1 } },
    });
    const messages = [{ role: 'user', content: 'hi' }];
    const variants: [string, PromptInput, TokenizeOptions?][] = [
      [MODEL, { kind: 'completion', prompt: 'Hello world, this is a test' }],
      [MODEL, { kind: 'completion', prompt: 'Hello world, this is a test', addSpecialTokens: false }],
      ['other', { kind: 'completion', prompt: 'Hello world, this is a test' }],
      [MODEL, { kind: 'completion', prompt: 'Hello world, this is a test' }, { cacheSalt: 'a' }],
      [MODEL, { kind: 'completion', prompt: 'Hello world, this is a test' }, { cacheSalt: 'b' }],
      [MODEL, { kind: 'chat', messages }],
      [MODEL, { kind: 'chat', messages, options: { addGenerationPrompt: false } }],
      [MODEL, { kind: 'chat', messages, options: { chatTemplateKwargs: { enable_thinking: false } } }],
      [MODEL, { kind: 'chat', messages, options: { chatTemplateKwargs: { enable_thinking: true } } }],
      // Templates print tool schemas in key order, so reordered keys are a different prompt.
      [MODEL, { kind: 'chat', messages, options: { tools: [tool('ab')] } }],
      [MODEL, { kind: 'chat', messages, options: { tools: [tool('ba')] } }],
      [MODEL, { kind: 'chat', messages, options: { chatTemplateKwargs: { x: null } } }],
      [MODEL, { kind: 'chat', messages, options: { chatTemplateKwargs: { x: Number.NaN } } }],
      [MODEL, { kind: 'chat', messages, options: { chatTemplateKwargs: { x: undefined } } }],
      [MODEL, { kind: 'chat', messages, options: { chatTemplateKwargs: {} } }],
    ];
    for (let round = 0; round < 2; round++) {
      for (const [model, input, options] of variants) {
        const result = await cache.tokenize(model, input, options);
        const fresh = await pool.tokenize(model, input, options);
        expect(Array.from(result.tokenIds)).toEqual(Array.from(fresh.tokenIds));
        expect(result.cacheSalt).toBe(fresh.cacheSalt);
        expect(result.cached).toBe(round === 1);
      }
    }
    expect(counter.calls).toHaveLength(variants.length);
    const ab = await cache.tokenize(MODEL, variants[9]![1]);
    const ba = await cache.tokenize(MODEL, variants[10]![1]);
    expect(Array.from(ab.tokenIds)).not.toEqual(Array.from(ba.tokenIds));
  });

  it('evicts the least recently used entries to stay within its byte budget', async () => {
    const counter = new CountingTokenizer(pool);
    const prompt = (n: number): PromptInput => ({ kind: 'completion', prompt: `${n} `.repeat(100) });
    const probe = new CachingTokenizer(pool);
    await probe.tokenize(MODEL, prompt(1));
    const entryBytes = probe.stats().bytes;
    expect(entryBytes).toBeGreaterThanOrEqual(4 * qwen3.encode(`1 `.repeat(100)).length);
    // Room for two of these equally sized entries, not three.
    const cache = new CachingTokenizer(counter, { maxBytes: Math.floor(2.5 * entryBytes) });
    await cache.tokenize(MODEL, prompt(1));
    await cache.tokenize(MODEL, prompt(2));
    await cache.tokenize(MODEL, prompt(1)); // 1 is now the most recent
    await cache.tokenize(MODEL, prompt(3)); // evicts 2
    expect(cache.stats().entries).toBe(2);
    expect(cache.stats().bytes).toBe(2 * entryBytes);
    expect((await cache.tokenize(MODEL, prompt(1))).cached).toBe(true);
    expect((await cache.tokenize(MODEL, prompt(3))).cached).toBe(true);
    expect((await cache.tokenize(MODEL, prompt(2))).cached).toBe(false);
    expect(counter.calls).toHaveLength(4);
  });

  it('does not store a result larger than the whole budget', async () => {
    const cache = new CachingTokenizer(pool, { maxBytes: 64 });
    await cache.tokenize(MODEL, chat);
    expect((await cache.tokenize(MODEL, chat)).cached).toBe(false);
    expect(cache.stats()).toMatchObject({ entries: 0, bytes: 0 });
  });

  it('hands out copies, so a caller changing its ids cannot corrupt later answers', async () => {
    const { cache } = cached();
    const expected = Array.from((await pool.tokenize(MODEL, chat)).tokenIds);
    const first = await cache.tokenize(MODEL, chat);
    first.tokenIds.fill(0);
    const second = await cache.tokenize(MODEL, chat);
    second.tokenIds[0] = 42;
    second.multimodal.push({ identifier: 'x', offset: 0, length: 1 });
    const third = await cache.tokenize(MODEL, chat);
    expect(Array.from(third.tokenIds)).toEqual(expected);
    expect(third.multimodal).toEqual([]);
  });

  it('shares one call among concurrent identical misses', async () => {
    const gated = new GatedTokenizer();
    const cache = new CachingTokenizer(gated);
    const calls = [cache.tokenize(MODEL, chat), cache.tokenize(MODEL, chat), cache.tokenize(MODEL, chat)];
    const different = cache.tokenize(MODEL, chat, { cacheSalt: 'other' });
    expect(gated.calls).toHaveLength(2);
    gated.answer([1, 2, 3]);
    gated.answer([4, 5]);
    const results = await Promise.all(calls);
    for (const r of results) expect(Array.from(r.tokenIds)).toEqual([1, 2, 3]);
    expect(results.map((r) => r.cached)).toEqual([false, true, true]);
    results[0]!.tokenIds[0] = 99;
    results[0]!.multimodal[0]!.offset = 7;
    expect(Array.from(results[1]!.tokenIds)).toEqual([1, 2, 3]);
    expect(results[1]!.multimodal).toEqual([{ identifier: 'img', offset: 0, length: 1 }]);
    expect(Array.from((await different).tokenIds)).toEqual([4, 5]);
    expect(cache.stats()).toMatchObject({ hits: 2, misses: 2, entries: 2 });
  });

  it('gives every waiter the error of a shared call and caches nothing', async () => {
    const gated = new GatedTokenizer();
    const cache = new CachingTokenizer(gated);
    const calls = Promise.allSettled([cache.tokenize(MODEL, chat), cache.tokenize(MODEL, chat)]);
    gated.fail(new TokenizationError('RENDER_UNAVAILABLE', 'down'));
    for (const s of await calls) expect(((s as PromiseRejectedResult).reason as TokenizationError).code).toBe('RENDER_UNAVAILABLE');
    const retry = cache.tokenize(MODEL, chat);
    expect(gated.calls).toHaveLength(2);
    gated.answer([1]);
    expect((await retry).cached).toBe(false);
  });

  it('keeps a shared call going while one waiter remains, and stops it when the last gives up', async () => {
    const gated = new GatedTokenizer();
    const cache = new CachingTokenizer(gated);
    const quitter = new AbortController();
    const stayer = new AbortController();
    const a = cache.tokenize(MODEL, chat, { signal: quitter.signal });
    const b = cache.tokenize(MODEL, chat, { signal: stayer.signal });
    quitter.abort();
    await expect(a).rejects.toMatchObject({ code: 'ABORTED' });
    expect(gated.calls[0]!.signal!.aborted).toBe(false);
    gated.answer([8]);
    expect(Array.from((await b).tokenIds)).toEqual([8]);

    const lone = new AbortController();
    const c = cache.tokenize(MODEL, { kind: 'completion', prompt: 'another' }, { signal: lone.signal });
    lone.abort();
    await expect(c).rejects.toMatchObject({ code: 'ABORTED' });
    expect(gated.calls[1]!.signal!.aborted).toBe(true);
  });

  it('keeps no answer past the local day it was made on (templates may print the date), whichever way the clock moves', async () => {
    const { cache, counter } = cached();
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      // A later day first: the clock is then set back to the evening before the one tested.
      vi.setSystemTime(new Date(2026, 11, 8, 9, 0, 0));
      await cache.tokenize(MODEL, chat);
      vi.setSystemTime(new Date(2026, 11, 6, 23, 59, 58));
      expect((await cache.tokenize(MODEL, chat)).cached).toBe(false);
      expect((await cache.tokenize(MODEL, chat)).cached).toBe(true);
      vi.setSystemTime(new Date(2026, 11, 7, 0, 0, 1));
      expect((await cache.tokenize(MODEL, chat)).cached).toBe(false);
      expect((await cache.tokenize(MODEL, chat)).cached).toBe(true);
      expect(counter.calls).toHaveLength(3);
    } finally {
      vi.useRealTimers();
    }
  });

  it('with on-repeat admission, keeps only answers to requests seen before, still shares concurrent calls, and stays exact', async () => {
    const counter = new CountingTokenizer(pool);
    const cache = new CachingTokenizer(counter, { admission: 'on-repeat' });
    // A stream of one-of-a-kind requests leaves nothing in the cache.
    for (let i = 0; i < 20; i++) await cache.tokenize(MODEL, { kind: 'completion', prompt: `question ${i}` });
    expect(cache.stats()).toMatchObject({ entries: 0, hits: 0, misses: 20 });
    // A request seen before is kept the second time, and answered from the cache the third.
    expect((await cache.tokenize(MODEL, chat)).cached).toBe(false);
    expect((await cache.tokenize(MODEL, chat)).cached).toBe(false);
    const third = await cache.tokenize(MODEL, chat);
    expect(third.cached).toBe(true);
    expect(Array.from(third.tokenIds)).toEqual(Array.from((await pool.tokenize(MODEL, chat)).tokenIds));
    expect(cache.stats()).toMatchObject({ entries: 1, hits: 1 });
    // Concurrent identical misses still share one call, admitted or not.
    const before = counter.calls.length;
    const fresh: PromptInput = { kind: 'completion', prompt: 'asked twice at once' };
    const [a, b] = await Promise.all([cache.tokenize(MODEL, fresh), cache.tokenize(MODEL, fresh)]);
    expect(counter.calls.length - before).toBe(1);
    expect(Array.from(a.tokenIds)).toEqual(Array.from(b.tokenIds));
    expect(() => new CachingTokenizer(counter, { admission: 'sometimes' as never })).toThrow(/admission/);
  });

  it('passes through, uncached, inputs it cannot key exactly', async () => {
    const { cache, counter } = cached();
    const odd: PromptInput = { kind: 'chat', messages: [{ role: 'user', content: 'hi' }], options: { chatTemplateKwargs: { when: new Date(0) } } };
    await cache.tokenize(MODEL, odd).catch(() => undefined);
    await cache.tokenize(MODEL, odd).catch(() => undefined);
    expect(counter.calls).toHaveLength(2);
    expect(cache.stats().entries).toBe(0);
  });

  it('fails with CLOSED once closed, and closes what it wraps', async () => {
    const inner = new LocalTokenizerPool({ models: { [MODEL]: 'Qwen/Qwen3-0.6B' }, workers: 0 });
    const cache = new CachingTokenizer(inner);
    await cache.close();
    await expect(cache.tokenize(MODEL, chat)).rejects.toMatchObject({ code: 'CLOSED' });
    await expect(inner.tokenize(MODEL, chat)).rejects.toMatchObject({ code: 'CLOSED' });
  });
});

describe('chat prompts read from a request body', () => {
  const threads = new LocalTokenizerPool({ unlisted: 'bundled', workers: 1 });
  afterAll(() => threads.close());
  const body = (extra: Record<string, unknown> = {}) =>
    Buffer.from(JSON.stringify({ model: 'Qwen/Qwen3-0.6B', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Where is parcel 7?' }], chat_template_kwargs: { enable_thinking: false }, ...extra }));
  const input = (bytes: Buffer): PromptInput => {
    const prompt = chatPromptFromBody(JSON.parse(bytes.toString('utf8')) as Record<string, unknown>)!;
    return { kind: 'chat', ...prompt, body: bytes };
  };

  it("are tokenized from the body's bytes on a thread exactly as from the messages", async () => {
    const withBody = await threads.tokenize('Qwen/Qwen3-0.6B', input(body()));
    const { body: _bytes, ...plain } = input(body()) as Extract<PromptInput, { kind: 'chat' }>;
    const fromMessages = await threads.tokenize('Qwen/Qwen3-0.6B', plain);
    expect(Array.from(withBody.tokenIds)).toEqual(Array.from(fromMessages.tokenIds));
  });

  it('are keyed by the body in the result cache: the same body hits, any other misses', async () => {
    const counter = new CountingTokenizer(threads);
    const cache = new CachingTokenizer(counter);
    await cache.tokenize('Qwen/Qwen3-0.6B', input(body()));
    expect((await cache.tokenize('Qwen/Qwen3-0.6B', input(body()))).cached).toBe(true);
    // Same messages, another max_tokens: another body, so no hit (exact, if conservative).
    expect((await cache.tokenize('Qwen/Qwen3-0.6B', input(body({ max_tokens: 5 })))).cached).toBe(false);
    expect((await cache.tokenize('Qwen/Qwen3-0.6B', input(body()), { cacheSalt: 's' })).cached).toBe(false);
    expect(counter.calls).toHaveLength(3);
  });
});
