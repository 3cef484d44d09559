/**
 * One request must not starve the others: a chat template that loops, a prompt far longer than
 * the model can take, a thread that stops answering. Each case here hung or exhausted a service
 * before (issue 16).
 */
import { ceiling, hostileWord, ISSUE_TEMPLATE, LOOPING_TEMPLATE, track } from '@kvix/test-support';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalTokenizerPool, ModelTokenizers, type PromptInput, type TokenizationObserver } from '../src/index.js';
import { CRASH_WORKER_FOR_TESTS } from '../src/pool/local-tokenizer-pool.js';
import { failure } from './failure.js';
import { qwen3 } from './fixtures.js';

const MODEL = 'Qwen/Qwen3-0.6B';
const models = { [MODEL]: MODEL };
const closing: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(closing.splice(0).map((c) => c.close()));
});

function pool(options: ConstructorParameters<typeof LocalTokenizerPool>[0]): LocalTokenizerPool {
  const p = new LocalTokenizerPool({ models, ...options });
  closing.push(p);
  return p;
}

const user = (content: string): PromptInput => ({ kind: 'chat', messages: [{ role: 'user', content }] });
const withTemplate = (chatTemplate: string): PromptInput => ({ kind: 'chat', messages: [{ role: 'user', content: 'hi' }], options: { chatTemplate } });

describe('chat templates under a budget', () => {
  it("refuses ranges beyond Jinja2's sandbox limit (100,000) as a template error, at once", () => {
    expect(() => qwen3.renderChat([{ role: 'user', content: 'hi' }], { chatTemplate: ISSUE_TEMPLATE })).toThrow(
      expect.objectContaining({ code: 'TEMPLATE_ERROR', message: expect.stringContaining('Range too big') }),
    );
    expect(qwen3.renderChat([{ role: 'user', content: 'hi' }], { chatTemplate: '{% for i in range(100000) %}{% endfor %}ok' })).toBe('ok');
  });

  it('stops a template that runs past its deadline with DEADLINE_EXCEEDED', () => {
    expect(() => qwen3.renderChat([{ role: 'user', content: 'hi' }], { chatTemplate: LOOPING_TEMPLATE }, { deadline: Date.now() + 50 })).toThrow(
      expect.objectContaining({ code: 'DEADLINE_EXCEEDED' }),
    );
  });

  it('stops a template that renders more text than allowed with PROMPT_TOO_LONG', () => {
    const repeat = '{% for i in range(100000) %}{{ messages[0].content }}{% endfor %}';
    expect(() => qwen3.renderChat([{ role: 'user', content: 'x'.repeat(1000) }], { chatTemplate: repeat }, { maxChars: 100_000 })).toThrow(
      expect.objectContaining({ code: 'PROMPT_TOO_LONG' }),
    );
    // Text built in a variable (not printed) until the end counts as it is produced too.
    const built = '{% set ns = namespace(s="") %}{% for i in range(100000) %}{% set ns.s = ns.s ~ messages[0].content %}{% endfor %}{{ ns.s }}';
    expect(() => qwen3.renderChat([{ role: 'user', content: 'x'.repeat(1000) }], { chatTemplate: built }, { maxChars: 100_000, deadline: Date.now() + ceiling(5000) })).toThrow(
      expect.objectContaining({ code: expect.stringMatching(/PROMPT_TOO_LONG|DEADLINE_EXCEEDED/) }),
    );
  });

  it("renders the model's own template exactly as before within the budget", () => {
    const messages = [{ role: 'user', content: 'Which saddle for long rides?' }];
    expect(qwen3.renderChat(messages, {}, { deadline: Date.now() + ceiling(60_000), maxChars: 10_000 })).toBe(qwen3.renderChat(messages));
  });
});

describe('the tokenizer pool under hostile requests', () => {
  it("answers other requests while a request's own looping template runs, on a thread of its own", async () => {
    const p = pool({ workers: 1 });
    await p.warmUp();
    // The deadline is what ends the hostile render: long enough (scaled for the machine's load) for the others to be answered first.
    const hostile = track(p.tokenize(MODEL, withTemplate(LOOPING_TEMPLATE), { deadline: Date.now() + ceiling(1000) }));
    const others = await Promise.all(Array.from({ length: 5 }, (_, i) => p.tokenize(MODEL, user(`question ${i}`))));
    expect(hostile.settled).toBe(false);
    expect(others.map((o) => Array.from(o.tokenIds))).toEqual(Array.from({ length: 5 }, (_, i) => qwen3.encodeChat([{ role: 'user', content: `question ${i}` }])));
    const outcome = await hostile.result;
    expect(outcome.status).toBe('rejected');
    expect((outcome as PromiseRejectedResult).reason).toMatchObject({ code: 'DEADLINE_EXCEEDED' });
  });

  it("with no threads configured (the default on two cores), still runs a long prompt and a request's own template on a thread", async () => {
    const p = pool({ workers: 0 });
    await p.warmUp();
    const long = track(p.tokenize(MODEL, { kind: 'completion', prompt: hostileWord(900_000) }, { deadline: Date.now() + ceiling(1000) }));
    const looping = track(p.tokenize(MODEL, withTemplate(LOOPING_TEMPLATE), { deadline: Date.now() + ceiling(1000) }));
    // On the event loop, either would have run to its end before this one was even looked at.
    expect(Array.from((await p.tokenize(MODEL, user('question'))).tokenIds)).toEqual(qwen3.encodeChat([{ role: 'user', content: 'question' }]));
    expect([long.settled, looping.settled]).toEqual([false, false]);
    for (const call of [long, looping]) expect(((await call.result) as PromiseRejectedResult).reason).toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    expect(p.stats()).toMatchObject({ workers: 0, stopped: 1 });
  });

  it('replaces a thread still busy past a deadline; the requests queued behind it are answered', async () => {
    const p = pool({ workers: 1 });
    await p.warmUp();
    // Seconds of BPE, far past the deadline, and nothing a template can interrupt. The deadline is
    // scaled for the machine's load, so the thread has started the request before it passes (one that
    // passes while a request waits fails it unstarted: the next test).
    const long = track(p.tokenize(MODEL, { kind: 'completion', prompt: hostileWord(900_000) }, { deadline: Date.now() + ceiling(150) }));
    const queued = Array.from({ length: 3 }, (_, i) => p.tokenize(MODEL, { kind: 'completion', prompt: `queued ${i}` }));
    const answers = await Promise.all(queued);
    expect(answers.map((a) => Array.from(a.tokenIds))).toEqual([0, 1, 2].map((i) => qwen3.encode(`queued ${i}`)));
    const outcome = await long.result;
    expect((outcome as PromiseRejectedResult).reason).toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    expect(p.stats()).toMatchObject({ stopped: 1, crashes: 0, inFlight: 0 });
    expect(p.health().ok).toBe(true);
  });

  it('fails requests whose deadline passed while they waited, without running them or stopping another thread', async () => {
    const p = pool({ workers: 1 });
    await p.warmUp();
    const deadline = Date.now() + ceiling(150);
    const long = p.tokenize(MODEL, { kind: 'completion', prompt: hostileWord(900_000) }, { deadline });
    const stale = Array.from({ length: 3 }, (_, i) => p.tokenize(MODEL, { kind: 'completion', prompt: `stale ${i}` }, { deadline }));
    for (const call of [long, ...stale]) expect((await failure(call)).code).toBe('DEADLINE_EXCEEDED');
    // Only the thread busy past the deadline was replaced; the stale ones never started anywhere.
    expect(p.stats()).toMatchObject({ stopped: 1, inFlight: 0 });
    expect(Array.from((await p.tokenize(MODEL, { kind: 'completion', prompt: 'fresh' })).tokenIds)).toEqual(qwen3.encode('fresh'));
  });

  it('reports itself unhealthy when its threads keep dying before answering anything', async () => {
    const p = pool({ workers: 1 });
    await p.warmUp();
    expect(p.health()).toMatchObject({ ok: true, live: 1 });
    for (let i = 0; i < 3; i++) {
      const crashes = p.stats().crashes;
      p[CRASH_WORKER_FOR_TESTS](0);
      await expect.poll(() => p.stats().crashes > crashes && p.health().live === 1, { timeout: ceiling(10_000) }).toBe(true);
    }
    expect(p.health()).toMatchObject({ ok: false, reason: expect.stringContaining('died 3 times') });
    // One answer from the slot's current thread makes it healthy again.
    expect(Array.from((await p.tokenize(MODEL, { kind: 'completion', prompt: 'back' })).tokenIds)).toEqual(qwen3.encode('back'));
    expect(p.health().ok).toBe(true);
  });
});

describe('ModelTokenizers', () => {
  function tokenizers(config: ConstructorParameters<typeof ModelTokenizers>[0], observer?: TokenizationObserver): ModelTokenizers {
    const t = new ModelTokenizers({ workers: 1, ...config }, observer ? { observer } : {});
    closing.push(t);
    return t;
  }

  it("refuses a request's own chat template with vLLM's words unless trusted", async () => {
    const t = tokenizers({});
    await t.warmUp([MODEL]);
    for (const input of [withTemplate(ISSUE_TEMPLATE), { kind: 'chat', messages: [{ role: 'user', content: 'hi' }], options: { chatTemplateKwargs: { chat_template: ISSUE_TEMPLATE } } } satisfies PromptInput]) {
      const err = await failure(t.tokenize(MODEL, input));
      expect(err.code).toBe('INVALID_REQUEST');
      expect(err.message).toContain('--trust-request-chat-template');
    }
    // Other kwargs are variables of the model's own template, as in vLLM.
    expect((await t.tokenize(MODEL, { kind: 'chat', messages: [{ role: 'user', content: 'hi' }], options: { chatTemplateKwargs: { enable_thinking: false } } })).tokenIds.length).toBeGreaterThan(0);
    const trusted = tokenizers({ trustRequestChatTemplate: true, timeoutMs: ceiling(10_000) });
    await trusted.warmUp([MODEL]);
    expect(Array.from((await trusted.tokenize(MODEL, withTemplate('{{ messages[0].content }}!'))).tokenIds)).toEqual(qwen3.encode('hi!', { addSpecialTokens: false }));
    expect((await failure(trusted.tokenize(MODEL, withTemplate(ISSUE_TEMPLATE)))).code).toBe('TEMPLATE_ERROR');
  });

  it('fails a tokenization that outlives timeoutMs with DEADLINE_EXCEEDED, and counts it', async () => {
    const failed: string[] = [];
    const t = tokenizers({ timeoutMs: ceiling(200), trustRequestChatTemplate: true }, { failed: (e) => failed.push(e.code) });
    await t.warmUp([MODEL]);
    expect((await failure(t.tokenize(MODEL, withTemplate(LOOPING_TEMPLATE)))).code).toBe('DEADLINE_EXCEEDED');
    expect((await failure(t.tokenize(MODEL, { kind: 'completion', prompt: hostileWord(900_000) }))).code).toBe('DEADLINE_EXCEEDED');
    expect(failed).toEqual(['DEADLINE_EXCEEDED', 'DEADLINE_EXCEEDED']);
    // The thread busy with the long prompt was replaced; once its replacement has loaded, all is as before.
    await t.warmUp([MODEL]);
    expect(Array.from((await t.tokenize(MODEL, { kind: 'completion', prompt: 'still serving' })).tokenIds)).toEqual(qwen3.encode('still serving'));
  });

  it("ends with ABORTED, not DEADLINE_EXCEEDED, when the caller's own signal fires first, before or during the work", async () => {
    const t = tokenizers({ timeoutMs: ceiling(60_000), trustRequestChatTemplate: true });
    await t.warmUp([MODEL]);
    expect((await failure(t.tokenize(MODEL, withTemplate(LOOPING_TEMPLATE), { signal: AbortSignal.abort() }))).code).toBe('ABORTED');
    const caller = new AbortController();
    const pending = failure(t.tokenize(MODEL, withTemplate(LOOPING_TEMPLATE), { signal: caller.signal }));
    setTimeout(() => caller.abort(), 50);
    expect((await pending).code).toBe('ABORTED');
  });

  it('refuses a prompt longer than the allowed tokens can hold before tokenizing any of it', async () => {
    const tokenized: number[] = [];
    const t = tokenizers({}, { tokenized: (e) => tokenized.push(e.tokens) });
    // 2 MB: at the default 8 characters per token of a 131072-token limit, refused on its length alone.
    const err = await failure(t.tokenize(MODEL, { kind: 'completion', prompt: 'a'.repeat(2_000_000) }));
    expect(err.code).toBe('PROMPT_TOO_LONG');
    expect(err.message).toContain('characters');
    expect(tokenized).toEqual([]);
    // The model's own context bounds it too, below maxPromptTokens.
    const small = new LocalTokenizerPool({ models, workers: 0, maxPromptTokens: 1000, maxCharsPerToken: 4 });
    closing.push(small);
    expect((await failure(small.tokenize(MODEL, { kind: 'completion', prompt: 'b'.repeat(4001) }))).code).toBe('PROMPT_TOO_LONG');
  });

  it('reports the health of local tokenization', async () => {
    const t = tokenizers({});
    expect(t.health()).toMatchObject({ ok: true });
    expect(tokenizers({ default: 'reject' }).health()).toBeNull();
  });
});
