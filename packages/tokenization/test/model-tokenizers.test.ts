import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  ModelTokenizers,
  TokenizationConfigSchema,
  TokenizationError,
  parseTokenizationConfig,
  type PromptInput,
  type TokenizationConfigInput,
  type TokenizationObserver,
} from '../src/index.js';
import { startFakeVllm, vllmAnswer, type FakeVllm } from './fake-vllm.js';
import { qwen3 } from './fixtures.js';
import { failure } from './failure.js';

const hello: PromptInput = { kind: 'completion', prompt: 'Hello there' };


function configError(config: unknown): string {
  try {
    new ModelTokenizers(config as TokenizationConfigInput);
  } catch (err) {
    if (err instanceof TokenizationError && err.code === 'INVALID_CONFIG') return err.message;
    throw err;
  }
  throw new Error('expected the configuration to be refused');
}

let vllm: FakeVllm;
const open: ModelTokenizers[] = [];

function tokenizers(config: TokenizationConfigInput, observer?: TokenizationObserver): ModelTokenizers {
  const t = new ModelTokenizers({ workers: 0, ...config }, { observer });
  open.push(t);
  return t;
}

beforeAll(async () => {
  vllm = await startFakeVllm();
});

afterAll(async () => {
  await Promise.all(open.map((t) => t.close()));
  await vllm.close();
});

beforeEach(() => {
  vllm.received.length = 0;
  vllm.answer = (request) => vllmAnswer(request, [1, 2, 3]);
});

describe('routing per model', () => {
  it('tokenizes listed models locally or through their vLLM server, as configured', async () => {
    const t = tokenizers({
      models: {
        'small-qwen': { local: 'Qwen/Qwen3-0.6B' },
        'vision-model': { render: { url: vllm.url, timeoutMs: 2000 } },
      },
      default: 'reject',
    });
    const local = await t.tokenize('small-qwen', hello);
    expect(local.source).toBe('local');
    expect(Array.from(local.tokenIds)).toEqual(qwen3.encode('Hello there'));
    const rendered = await t.tokenize('vision-model', hello, { cacheSalt: 'salt' });
    expect(rendered).toMatchObject({ source: 'render', cacheSalt: 'salt' });
    expect(Array.from(rendered.tokenIds)).toEqual([1, 2, 3]);
    expect(vllm.received.map((r) => r.body['model'])).toEqual(['vision-model']);
  });

  it("by default serves unlisted models whose name is a bundled tokenizer, and refuses others", async () => {
    const t = tokenizers({});
    expect(Array.from((await t.tokenize('Qwen/Qwen3-8B', hello)).tokenIds)).toEqual(qwen3.encode('Hello there'));
    const err = await failure(t.tokenize('meta-llama/Llama-3.1-8B-Instruct', hello));
    expect(err.code).toBe('UNKNOWN_MODEL');
    expect(err.message).toContain('meta-llama/Llama-3.1-8B-Instruct');
  });

  it("refuses every unlisted model with default 'reject', bundled names included", async () => {
    const t = tokenizers({ default: 'reject', models: { mine: { local: 'Qwen/Qwen3-0.6B' } } });
    expect((await failure(t.tokenize('Qwen/Qwen3-8B', hello))).code).toBe('UNKNOWN_MODEL');
    expect((await t.tokenize('mine', hello)).source).toBe('local');
  });

  it('sends unlisted models to one vLLM server, or one local tokenizer, when the default says so', async () => {
    const viaRender = tokenizers({ default: { render: { url: vllm.url } } });
    expect((await viaRender.tokenize('any-model', hello)).source).toBe('render');
    expect(vllm.received[0]!.body['model']).toBe('any-model');
    const viaLocal = tokenizers({ default: { local: 'Qwen/Qwen3-0.6B' } });
    expect(Array.from((await viaLocal.tokenize('any-model', hello)).tokenIds)).toEqual(qwen3.encode('Hello there'));
  });

  it('uses worker threads when configured to', async () => {
    const t = tokenizers({ workers: 1, models: { m: { local: 'Qwen/Qwen3-0.6B' } } });
    await t.warmUp();
    expect(Array.from((await t.tokenize('m', hello)).tokenIds)).toEqual(qwen3.encode('Hello there'));
  });

  it('refuses to warm up a model it has no tokenizer for', async () => {
    const t = tokenizers({ default: 'reject', models: { m: { local: 'Qwen/Qwen3-0.6B' }, r: { render: { url: vllm.url } } } });
    await t.warmUp(['m', 'r']);
    expect((await failure(t.warmUp(['nope']))).code).toBe('UNKNOWN_MODEL');
  });
});

describe('the prompt length limit', () => {
  it('refuses a prompt with more tokens than maxPromptTokens, and accepts one at the limit', async () => {
    const text = 'one two three four five six seven eight';
    const tokens = qwen3.encode(text).length;
    const atLimit = tokenizers({ maxPromptTokens: tokens });
    expect((await atLimit.tokenize('Qwen/Qwen3-0.6B', { kind: 'completion', prompt: text })).tokenIds.length).toBe(tokens);
    const below = tokenizers({ maxPromptTokens: tokens - 1 });
    const err = await failure(below.tokenize('Qwen/Qwen3-0.6B', { kind: 'completion', prompt: text }));
    expect(err.code).toBe('PROMPT_TOO_LONG');
    expect(err.message).toContain(`${tokens} tokens`);
  });

  it('also refuses a cached answer that is too long', async () => {
    const t = tokenizers({ maxPromptTokens: 2, default: { render: { url: vllm.url } } });
    for (let i = 0; i < 2; i++) expect((await failure(t.tokenize('m', hello))).code).toBe('PROMPT_TOO_LONG');
  });

  it('refuses absurdly long text before anything is tokenized', async () => {
    const t = tokenizers({ maxPromptTokens: 100, default: { render: { url: vllm.url } } });
    const long: PromptInput = { kind: 'chat', messages: [{ role: 'user', content: [{ type: 'text', text: 'x'.repeat(1601) }] }] };
    expect((await failure(t.tokenize('m', long))).code).toBe('PROMPT_TOO_LONG');
    expect((await failure(t.tokenize('m', { kind: 'completion', prompt: 'y'.repeat(1601) }))).code).toBe('PROMPT_TOO_LONG');
    expect(vllm.received).toHaveLength(0);
  });
});

describe('the result cache', () => {
  it('keeps an answer once its request comes again, then answers from the cache; is off with cacheBytes: 0', async () => {
    // on-repeat (the default): the first answer is not kept, the second is, the third is a hit.
    const on = tokenizers({ default: { render: { url: vllm.url } } });
    await on.tokenize('m', hello);
    expect((await on.tokenize('m', hello)).cached).toBe(false);
    expect((await on.tokenize('m', hello)).cached).toBe(true);
    expect(on.cacheStats()).toMatchObject({ hits: 1, misses: 2, entries: 1 });
    expect(vllm.received).toHaveLength(2);
    const always = tokenizers({ cacheAdmission: 'always', default: { render: { url: vllm.url } } });
    await always.tokenize('m', hello);
    expect((await always.tokenize('m', hello)).cached).toBe(true);
    expect(vllm.received).toHaveLength(3);
    const off = tokenizers({ cacheBytes: 0, default: { render: { url: vllm.url } } });
    await off.tokenize('m', hello);
    expect((await off.tokenize('m', hello)).cached).toBe(false);
    expect(off.cacheStats()).toBeNull();
    expect(vllm.received).toHaveLength(5);
  });
});

describe('the observer', () => {
  it('hears of each tokenization and each failure, with source and code', async () => {
    const seen: unknown[] = [];
    const t = tokenizers(
      { cacheAdmission: 'always', models: { r: { render: { url: vllm.url } } } },
      {
        tokenized: (e) => seen.push({ ...e, seconds: typeof e.seconds }),
        failed: (e) => seen.push(e),
      },
    );
    await t.tokenize('Qwen/Qwen3-0.6B', hello);
    await t.tokenize('Qwen/Qwen3-0.6B', hello);
    await t.tokenize('r', hello);
    vllm.answer = () => ({ status: 500, json: { error: { message: 'boom', type: 'InternalServerError', code: 500 } } });
    await failure(t.tokenize('r', { kind: 'completion', prompt: 'other' }));
    await failure(t.tokenize('unknown-model', hello));
    const helloTokens = qwen3.encode('Hello there').length;
    expect(seen).toEqual([
      { model: 'Qwen/Qwen3-0.6B', source: 'local', seconds: 'number', cached: false, tokens: helloTokens },
      { model: 'Qwen/Qwen3-0.6B', source: 'local', seconds: 'number', cached: true, tokens: helloTokens },
      { model: 'r', source: 'render', seconds: 'number', cached: false, tokens: 3 },
      { model: 'r', source: 'render', code: 'RENDER_UNAVAILABLE' },
      { model: 'unknown-model', source: 'none', code: 'UNKNOWN_MODEL' },
    ]);
  });

  it('cannot break a request by throwing', async () => {
    const t = tokenizers({}, { tokenized: () => {
      throw new Error('metrics bug');
    } });
    expect((await t.tokenize('Qwen/Qwen3-0.6B', hello)).source).toBe('local');
  });
});

describe('configuration', () => {
  it('fills defaults and accepts the documented shapes', () => {
    const config = parseTokenizationConfig({
      workers: 1,
      models: { 'Qwen/Qwen3-0.6B': { local: 'Qwen/Qwen3-0.6B' }, 'my-model': { render: { url: 'http://vllm:8000', timeoutMs: 5000, headers: { authorization: 'Bearer x' } } } },
    });
    expect(config).toMatchObject({ workers: 1, cacheBytes: 67108864, maxPromptTokens: 131072, maxInFlight: 1024, default: 'bundled' });
    expect(TokenizationConfigSchema.parse(config)).toEqual(config);
  });

  it('names the offending key in every error', () => {
    expect(configError({ workers: -1 })).toContain('workers:');
    expect(configError({ cacheBytes: 'lots' })).toContain('cacheBytes:');
    expect(configError({ maxPromptTokens: 0 })).toContain('maxPromptTokens:');
    expect(configError({ default: 'sometimes' })).toMatch(/default: expected 'bundled', 'reject'/);
    expect(configError({ models: { 'Qwen/Qwen3.5-9B': { render: { url: 'ftp://vllm' } } } })).toContain('models["Qwen/Qwen3.5-9B"].render.url: must be an http(s) URL');
    expect(configError({ models: { m: { render: { url: 'http://vllm:8000', timeoutMs: -5 } } } })).toContain('models.m.render.timeoutMs:');
    expect(configError({ models: { m: { local: 'a', render: { url: 'http://vllm:8000' } } } })).toContain('models.m: give exactly one of');
    expect(configError({ models: { m: 'Qwen/Qwen3-0.6B' } })).toContain('models.m: expected { local:');
    expect(configError({ modles: {} })).toContain('modles');
  });
});
