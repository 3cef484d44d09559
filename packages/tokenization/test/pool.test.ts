import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultWorkers, LocalTokenizerPool, TokenizationError, type ChatMessage, type PromptInput } from '../src/index.js';
import { CRASH_WORKER_FOR_TESTS } from '../src/pool/local-tokenizer-pool.js';
import { fixture, qwen3, qwen3ConfigPath, qwen3Files } from './fixtures.js';
import { failure } from './failure.js';

const MODEL = 'served-qwen';
const models = { [MODEL]: 'Qwen/Qwen3-0.6B' };


async function ids(pool: LocalTokenizerPool, input: PromptInput, model = MODEL): Promise<number[]> {
  return Array.from((await pool.tokenize(model, input)).tokenIds);
}

function chatWith(system: string, user: string): PromptInput {
  return {
    kind: 'chat',
    messages: [
      { role: 'system', content: system },
      { role: 'user', content: user },
    ],
  };
}

const longSystem = 'You are a meticulous assistant for a logistics company. '.repeat(40);

describe.each([
  ['three threads', 3],
  ['inline', 0],
])('a pool (%s) gives exactly what LocalTokenizer gives', (_name, workers) => {
  let pool: LocalTokenizerPool;

  beforeAll(async () => {
    pool = new LocalTokenizerPool({ models, workers });
    await pool.warmUp();
  });

  afterAll(async () => {
    await pool.close();
  });

  it('for completion prompts, with and without special tokens', async () => {
    const texts = fixture.encode.map((c) => c.text).filter((t) => t !== '');
    const results = await Promise.all(
      texts.flatMap((text) => [ids(pool, { kind: 'completion', prompt: text }), ids(pool, { kind: 'completion', prompt: text, addSpecialTokens: false })]),
    );
    texts.forEach((text, i) => {
      expect(results[2 * i]).toEqual(qwen3.encode(text));
      expect(results[2 * i + 1]).toEqual(qwen3.encode(text, { addSpecialTokens: false }));
    });
  });

  it('for chat requests, tools and template options included', async () => {
    const results = await Promise.all(fixture.chat.map((c) => ids(pool, { kind: 'chat', messages: c.messages, options: c.options })));
    fixture.chat.forEach((c, i) => {
      expect(results[i]).toEqual(c.ids);
      expect(results[i]).toEqual(qwen3.encodeChat(c.messages, c.options));
    });
  });

  it('for many concurrent chats sharing a long system message', async () => {
    const inputs = Array.from({ length: 24 }, (_, i) => chatWith(longSystem, `Question ${i}: where is parcel ${i * 7919}?`));
    const results = await Promise.all(inputs.map((input) => ids(pool, input)));
    inputs.forEach((input, i) => {
      if (input.kind !== 'chat') throw new Error('unreachable');
      expect(results[i]).toEqual(qwen3.encodeChat(input.messages));
    });
  });

  it('returning the ids as a Uint32Array with the salt the request gave', async () => {
    const result = await pool.tokenize(MODEL, { kind: 'completion', prompt: 'hi' }, { cacheSalt: 'tenant-7' });
    expect(result.tokenIds).toBeInstanceOf(Uint32Array);
    expect(result).toMatchObject({ multimodal: [], cacheSalt: 'tenant-7', source: 'local', cached: false });
  });

  it("keeping error codes and the template's own message", async () => {
    const raised = fixture.errors[0]!;
    const templateError = await failure(pool.tokenize(MODEL, { kind: 'chat', messages: raised.messages, options: raised.options }));
    expect(templateError.code).toBe('TEMPLATE_ERROR');
    expect(templateError.message).toBe(raised.message);
    expect(templateError).toBeInstanceOf(TokenizationError);
    const partial: ChatMessage[] = [{ role: 'user', content: 'a' }];
    expect((await failure(pool.tokenize(MODEL, { kind: 'chat', messages: partial, options: { continueFinalMessage: true, addGenerationPrompt: true } }))).code).toBe(
      'INVALID_REQUEST',
    );
    expect((await failure(pool.tokenize(MODEL, { kind: 'chat', messages: [] }))).code).toBe('INVALID_REQUEST');
    expect((await failure(pool.tokenize(MODEL, { kind: 'chat', messages: [{ role: 'user', content: [{ type: 'image_url' }] }] }))).code).toBe(
      'INVALID_REQUEST',
    );
  });

  it('rejecting what vLLM rejects before tokenizing: an empty prompt, a malformed salt', async () => {
    const empty = await failure(pool.tokenize(MODEL, { kind: 'completion', prompt: '' }));
    expect(empty.code).toBe('INVALID_REQUEST');
    expect(empty.message).toBe('Either prompt or prompt_embeds must be provided and non-empty.');
    for (const salt of ['', 'a/b', 'x'.repeat(129)]) {
      expect((await failure(pool.tokenize(MODEL, { kind: 'completion', prompt: 'hi' }, { cacheSalt: salt }))).code).toBe('INVALID_REQUEST');
    }
    expect((await failure(pool.tokenize(MODEL, { kind: 'poem', text: 'x' } as unknown as PromptInput))).code).toBe('INVALID_REQUEST');
  });

  it('refusing models it has no tokenizer for', async () => {
    const err = await failure(pool.tokenize('Qwen/Qwen3-8B', { kind: 'completion', prompt: 'hi' }));
    expect(err.code).toBe('UNKNOWN_MODEL');
    expect(err.message).toContain(MODEL);
  });
});

describe('tokenizers from directories', () => {
  let root: string;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'kvix-pool-'));
  });

  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('loads a directory tokenizer on the threads and encodes with its own post-processor', async () => {
    const dir = join(root, 'with-bos');
    await mkdir(dir);
    const files = qwen3Files();
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify({ ...files.tokenizerJson, post_processor: fixture.bosPostProcessor.postProcessor }));
    await copyFile(qwen3ConfigPath, join(dir, 'tokenizer_config.json'));
    const pool = new LocalTokenizerPool({ models: { bos: dir }, workers: 2 });
    try {
      // vLLM refuses an empty completion prompt before tokenizing it.
      for (const c of fixture.bosPostProcessor.cases.filter((x) => x.text !== '')) {
        expect(await ids(pool, { kind: 'completion', prompt: c.text }, 'bos')).toEqual(c.ids);
      }
      expect(await ids(pool, { kind: 'chat', messages: fixture.bosPostProcessor.chat.messages }, 'bos')).toEqual(fixture.bosPostProcessor.chat.ids);
    } finally {
      await pool.close();
    }
  });

  it('reports a missing directory with FILE_NOT_FOUND, from warmUp and from requests', async () => {
    const pool = new LocalTokenizerPool({ models: { gone: join(root, 'missing') }, workers: 1 });
    try {
      expect((await failure(pool.warmUp())).code).toBe('FILE_NOT_FOUND');
      expect((await failure(pool.tokenize('gone', { kind: 'completion', prompt: 'hi' }))).code).toBe('FILE_NOT_FOUND');
    } finally {
      await pool.close();
    }
  });
});

describe('serving unlisted models', () => {
  it("serves a bundled tokenizer's names when told to, and only those", async () => {
    const pool = new LocalTokenizerPool({ unlisted: 'bundled', workers: 0 });
    expect(await ids(pool, { kind: 'completion', prompt: 'hello' }, 'Qwen/Qwen3-32B')).toEqual(qwen3.encode('hello'));
    expect((await failure(pool.tokenize('meta-llama/Llama-3.1-8B', { kind: 'completion', prompt: 'hello' }))).code).toBe('UNKNOWN_MODEL');
    await pool.close();
  });

  it('serves every model with one spec when given one', async () => {
    const pool = new LocalTokenizerPool({ unlisted: { spec: 'Qwen/Qwen3-0.6B' }, workers: 0 });
    expect(await ids(pool, { kind: 'completion', prompt: 'hello' }, 'anything')).toEqual(qwen3.encode('hello'));
    await pool.close();
  });
});

describe('load and failure', () => {
  it('refuses requests beyond maxInFlight with OVERLOADED and serves the rest', async () => {
    for (const workers of [1, 0]) {
      const pool = new LocalTokenizerPool({ models, workers, maxInFlight: 2 });
      const calls = [1, 2, 3].map((n) => pool.tokenize(MODEL, { kind: 'completion', prompt: `request ${n}` }));
      const settled = await Promise.allSettled(calls);
      expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'fulfilled', 'rejected']);
      expect(((settled[2] as PromiseRejectedResult).reason as TokenizationError).code).toBe('OVERLOADED');
      // Capacity comes back once requests are answered.
      expect(await ids(pool, { kind: 'completion', prompt: 'later' })).toEqual(qwen3.encode('later'));
      await pool.close();
    }
  });

  it('fails pending requests with CLOSED when closed, and every later one', async () => {
    const pool = new LocalTokenizerPool({ models, workers: 2 });
    await pool.warmUp();
    const pending = Promise.allSettled(Array.from({ length: 6 }, (_, i) => pool.tokenize(MODEL, chatWith(longSystem, `q${i} `.repeat(500)))));
    await pool.close();
    for (const s of await pending) {
      expect(s.status).toBe('rejected');
      expect(((s as PromiseRejectedResult).reason as TokenizationError).code).toBe('CLOSED');
    }
    expect((await failure(pool.tokenize(MODEL, { kind: 'completion', prompt: 'hi' }))).code).toBe('CLOSED');
  });

  it('replaces a crashed thread, and the requests queued on it are answered by the replacement', async () => {
    const pool = new LocalTokenizerPool({ models, workers: 1 });
    await pool.warmUp();
    pool[CRASH_WORKER_FOR_TESTS](0);
    // Posted after the crash message, so the dying thread never starts them: they were not at fault.
    const queued = [ids(pool, { kind: 'completion', prompt: 'one' }), ids(pool, { kind: 'completion', prompt: 'two' })];
    expect(await Promise.all(queued)).toEqual([qwen3.encode('one'), qwen3.encode('two')]);
    expect(await ids(pool, { kind: 'completion', prompt: 'three' })).toEqual(qwen3.encode('three'));
    expect(pool.stats()).toMatchObject({ inFlight: 0, crashes: 1, handedOff: 2 });
    expect(pool.health().ok).toBe(true);
    await pool.close();
  });

  it("fails with ABORTED when the caller's signal fires, and keeps serving", async () => {
    const pool = new LocalTokenizerPool({ models, workers: 1 });
    await pool.warmUp();
    const before = new AbortController();
    before.abort();
    expect((await failure(pool.tokenize(MODEL, { kind: 'completion', prompt: 'x' }, { signal: before.signal }))).code).toBe('ABORTED');
    const during = new AbortController();
    const pending = pool.tokenize(MODEL, chatWith(longSystem, 'long '.repeat(2000)), { signal: during.signal });
    during.abort();
    expect((await failure(pending)).code).toBe('ABORTED');
    expect(await ids(pool, { kind: 'completion', prompt: 'still here' })).toEqual(qwen3.encode('still here'));
    await pool.close();
  });
});

describe('thread affinity', () => {
  it('sends requests that open alike to the same thread, and different openings across threads', async () => {
    const pool = new LocalTokenizerPool({ models, workers: 3 });
    await pool.warmUp();
    const threadOf = async (input: PromptInput): Promise<number> => {
      const before = pool.stats().answeredPerWorker;
      await pool.tokenize(MODEL, input);
      return pool.stats().answeredPerWorker.findIndex((n, i) => n > before[i]!);
    };
    const threadsByOpening: number[][] = [];
    for (let opening = 0; opening < 6; opening++) {
      const threads: number[] = [];
      for (let q = 0; q < 3; q++) threads.push(await threadOf(chatWith(`Agent ${opening}. ${longSystem}`, `question ${q}`)));
      threadsByOpening.push(threads);
    }
    for (const threads of threadsByOpening) expect(new Set(threads).size).toBe(1);
    expect(new Set(threadsByOpening.map((t) => t[0])).size).toBeGreaterThan(1);
    await pool.close();
  });

  it('passes work to other threads when the preferred one falls behind', async () => {
    const pool = new LocalTokenizerPool({ models, workers: 2 });
    await pool.warmUp();
    const before = pool.stats().answeredPerWorker;
    await Promise.all(Array.from({ length: 20 }, (_, i) => pool.tokenize(MODEL, chatWith(longSystem, `question ${i}`))));
    const answered = pool.stats().answeredPerWorker.map((n, i) => n - before[i]!);
    expect(answered.every((n) => n > 0)).toBe(true);
    expect(answered.reduce((a, b) => a + b)).toBe(20);
    await pool.close();
  });
});

describe('options', () => {
  it('refuses unusable settings with INVALID_CONFIG', () => {
    expect(() => new LocalTokenizerPool({ workers: -1 })).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG' }));
    expect(() => new LocalTokenizerPool({ maxInFlight: 0 })).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG' }));
    expect(() => new LocalTokenizerPool({ models: { m: '' } })).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG', message: expect.stringContaining('models["m"]') }));
  });

  it('tokenizes on the event loop by default on two cores or fewer and keeps one core for it above', () => {
    expect([1, 2, 3, 4, 16].map(defaultWorkers)).toEqual([0, 0, 2, 3, 15]);
  });
});
