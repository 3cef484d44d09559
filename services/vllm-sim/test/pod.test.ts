import { request as httpRequest } from 'node:http';
import { decodeEventBatch, encodeReplayRequest, parseEventMessage, parseReplayReply, type BlockStored, type DecodedBatch, type EventMessage } from '@kvix/kv-events';
import { freePortRange, readVectorJson, waitFor } from '@kvix/test-support';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';

import { Dealer, Subscriber } from 'zeromq';
import { resolveSimConfig, SimPod } from '../src/index.js';

const silent = pino({ level: 'silent' });

interface Running {
  pod: SimPod;
  http: string[];
  events: string[];
  replays: string[];
  messages: (EventMessage & { batch: DecodedBatch })[];
  subs: Subscriber[];
}

const running: Running[] = [];

async function startPod(overrides: Record<string, unknown> = {}, kvEvents: Record<string, unknown> = {}): Promise<Running> {
  const dp = Number(overrides['dataParallelSize'] ?? 1);
  const [httpPort, eventPort, replayPort] = await freePortsSpaced(dp);
  const config = resolveSimConfig(
    {
      port: httpPort,
      timeScale: 20,
      logLevel: 'silent',
      pythonHashSeed: '42',
      kvEventsConfig: { enable_kv_cache_events: true, endpoint: `tcp://*:${eventPort}`, replay_endpoint: `tcp://*:${replayPort}`, ...kvEvents },
      ...overrides,
    },
    {},
  );
  const pod = await SimPod.start(config, silent);
  const r: Running = {
    pod,
    http: Array.from({ length: dp }, (_, i) => `http://127.0.0.1:${httpPort! + i}`),
    events: Array.from({ length: dp }, (_, i) => `tcp://127.0.0.1:${eventPort! + i}`),
    replays: Array.from({ length: dp }, (_, i) => `tcp://127.0.0.1:${replayPort! + i}`),
    messages: [],
    subs: [],
  };
  running.push(r);
  for (let rank = 0; rank < dp; rank++) {
    const sub = new Subscriber();
    sub.connect(r.events[rank]!);
    sub.subscribe();
    r.subs.push(sub);
    // Only this pod's own topic: test files run in parallel, and a port another file's pod held a
    // moment ago can still deliver its messages to a subscriber that connected early.
    const topicPrefix = `kv@127.0.0.1:${httpPort! + rank}@`;
    void (async () => {
      for await (const frames of sub) {
        const msg = parseEventMessage(frames);
        if (msg.topic.startsWith(topicPrefix)) r.messages.push({ ...msg, batch: decodeEventBatch(msg.payload) });
      }
    })().catch(() => undefined);
  }
  // ZeroMQ subscriptions propagate asynchronously: reset until the subscriber sees the reset.
  for (let rank = 0; rank < dp; rank++) {
    await waitFor(async () => {
      await post(r.http[rank]!, '/reset_prefix_cache', {});
      return r.messages.some((m) => m.batch.dataParallelRank === rank && m.batch.events.some((e) => e.type === 'AllBlocksCleared'));
    }, 10_000, 'the subscriber to connect');
    // An earlier reset's batch may still be in flight: wait for the newest one before starting clean.
    const state = (await (await fetch(`${r.http[rank]!}/sim/state`)).json()) as { publisher: { nextSeq: string } };
    const last = BigInt(state.publisher.nextSeq) - 1n;
    await waitFor(() => r.messages.some((m) => m.batch.dataParallelRank === rank && m.seq === last), 10_000, 'the last reset batch');
  }
  r.messages.length = 0;
  return r;
}

/** HTTP, event and replay base ports, each with room for dp consecutive ranks. */
async function freePortsSpaced(dp: number): Promise<number[]> {
  return [await freePortRange(dp), await freePortRange(dp), await freePortRange(dp)];
}

async function post(base: string, path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

interface Chunk {
  object: string;
  choices: { index: number; delta?: { role?: string; content?: string }; text?: string; finish_reason: string | null; stop_reason?: null }[];
  usage?: Record<string, unknown>;
}

/** A streamed request's events: the JSON chunks, and whether [DONE] ended it. */
async function stream(base: string, path: string, body: Record<string, unknown>): Promise<{ chunks: Chunk[]; done: boolean; contentType: string | null }> {
  const res = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: true }) });
  const events = (await res.text()).split('\n\n').filter(Boolean);
  const done = events.at(-1) === 'data: [DONE]';
  return { chunks: (done ? events.slice(0, -1) : events).map((e) => JSON.parse(e.slice(6)) as Chunk), done, contentType: res.headers.get('content-type') };
}

const storedEvents = (r: Running): BlockStored[] => r.messages.flatMap((m) => m.batch.events).filter((e): e is BlockStored => e.type === 'BlockStored');

afterEach(async () => {
  for (const r of running.splice(0)) {
    for (const s of r.subs) s.close();
    await r.pod.stop();
  }
});

describe('vllm-sim over real sockets', () => {
  const prompt = 'The quick brown fox jumps over the lazy dog. '.repeat(12);

  it('publishes BlockStored carrying the prompt\'s token ids under the llm-d topic', async () => {
    const r = await startPod();
    const { json: tok } = await post(r.http[0]!, '/tokenize', { prompt });
    const tokens = tok['tokens'] as number[];
    const { status } = await post(r.http[0]!, '/v1/completions', { model: 'Qwen/Qwen3-0.6B', prompt, max_tokens: 1 });
    expect(status).toBe(200);
    const ev = await waitFor(() => storedEvents(r)[0], 5000, 'a BlockStored event');
    const full = Math.floor(tokens.length / 16) * 16;
    expect(Array.from(ev.tokenIds)).toEqual(tokens.slice(0, full));
    expect(r.messages[0]!.topic).toBe(`kv@127.0.0.1:${new URL(r.http[0]!).port}@Qwen/Qwen3-0.6B`);
  });

  it('hashes blocks exactly as vLLM does (the shared vLLM vectors, prompt given as token ids)', async () => {
    const vectors = readVectorJson('vllm-engine-hashes.json') as { cases: { id: string; algo: string; seed: string; block_size: number; token_ids: number[]; wire_block_hashes_int: bigint[] }[] };
    for (const id of ['cbor-s42-bs16-3blk', 'pkl-s0-bs16-1blk', 'xxcbor-s42-bs16-3blk']) {
      const c = vectors.cases.find((x) => x.id === id)!;
      const r = await startPod({ prefixCachingHashAlgo: c.algo, pythonHashSeed: c.seed, blockSize: c.block_size });
      const { status } = await post(r.http[0]!, '/v1/completions', { model: 'Qwen/Qwen3-0.6B', prompt: c.token_ids, max_tokens: 1 });
      expect(status).toBe(200);
      const ev = await waitFor(() => storedEvents(r)[0], 5000, 'a BlockStored event');
      expect({ id, hashes: Array.from(ev.blockHashes, String) }).toEqual({ id, hashes: c.wire_block_hashes_int.map(String) });
    }
  });

  it('announces evictions as BlockRemoved of blocks it stored earlier', async () => {
    const r = await startPod({ numGpuBlocksOverride: 24 });
    for (let i = 0; i < 6; i++) await post(r.http[0]!, '/v1/completions', { prompt: `request ${i}: ${prompt}`, max_tokens: 1 });
    const removed = await waitFor(() => r.messages.flatMap((m) => m.batch.events).filter((e) => e.type === 'BlockRemoved'), 5000, 'a BlockRemoved');
    const storedHashes = new Set(storedEvents(r).flatMap((e) => Array.from(e.blockHashes)));
    for (const ev of removed) if (ev.type === 'BlockRemoved') for (const h of ev.blockHashes) expect(storedHashes.has(h)).toBe(true);
  });

  it('replays batches a subscriber missed, then the end marker', async () => {
    const r = await startPod();
    await post(r.http[0]!, '/sim/faults', { dropEventsFraction: 1 });
    await post(r.http[0]!, '/v1/completions', { prompt, max_tokens: 1 });
    expect(r.messages).toHaveLength(0);
    const dealer = new Dealer();
    dealer.connect(r.replays[0]!);
    await dealer.send(encodeReplayRequest(0n));
    const replies = [];
    for (;;) {
      const reply = parseReplayReply(await dealer.receive());
      if (reply.end) break;
      replies.push({ ...reply, batch: decodeEventBatch(reply.payload) });
    }
    dealer.close();
    expect(replies.map((x) => x.seq)).toEqual(replies.map((_, i) => BigInt(i)));
    expect(replies.some((x) => x.batch.events.some((e) => e.type === 'BlockStored'))).toBe(true);
  });

  it('answers /reset_prefix_cache like vLLM: false while a request holds blocks, true once it preempts running requests', async () => {
    const r = await startPod();
    const base = r.http[0]!;
    // Slowed down so the request is still running when the resets arrive.
    await post(base, '/sim/faults', { slowdown: 100 });
    const long = post(base, '/v1/completions', { prompt, max_tokens: 400 });
    await waitFor(async () => ((await (await fetch(`${base}/sim/state`)).json()) as { running: number }).running === 1, 5000, 'the request to run');
    expect(await post(base, '/reset_prefix_cache', {})).toEqual({ status: 200, json: { success: false } });
    expect(await post(base, '/reset_prefix_cache?reset_running_requests=true', {})).toEqual({ status: 200, json: { success: true } });
    await post(base, '/sim/faults', { slowdown: 1 });
    await waitFor(() => r.messages.some((m) => m.batch.events.some((e) => e.type === 'AllBlocksCleared')), 5000, 'AllBlocksCleared');
    // The preempted request is recomputed and finishes in full.
    expect(await long).toMatchObject({ status: 200, json: { choices: [{ finish_reason: 'length' }], usage: { completion_tokens: 400 } } });
    // Without a CPU tier there is no external cache to reset: vLLM answers false.
    expect(await post(base, '/reset_prefix_cache?reset_external=true', {})).toEqual({ status: 200, json: { success: false } });
    expect(await post(base, '/reset_prefix_cache?reset_external=maybe', {})).toMatchObject({ status: 400, json: { error: { param: 'query.reset_external' } } });
  });

  it('keeps its CPU tier through a plain reset and drops it with reset_external', async () => {
    const r = await startPod({ kvOffload: 'offloading-connector', numGpuBlocksOverride: 24, numCpuBlocks: 400 });
    const base = r.http[0]!;
    await post(base, '/v1/completions', { prompt, max_tokens: 1 });
    const tokens = (await post(base, '/tokenize', { prompt })).json['tokens'] as number[];
    for (let i = 0; i < 6; i++) await post(base, '/v1/completions', { prompt: `filler ${i}: ${'lorem ipsum dolor sit amet '.repeat(20)}`, max_tokens: 1 });
    const held = async (): Promise<{ gpuBlocks: number; cpuBlocks: number }> => (await post(base, '/sim/prefix', { tokens })).json as never;
    const cpu = (await held()).cpuBlocks;
    expect(cpu).toBeGreaterThan(0);
    expect(await post(base, '/reset_prefix_cache', {})).toEqual({ status: 200, json: { success: true } });
    expect(await held()).toMatchObject({ gpuBlocks: 0, cpuBlocks: cpu });
    expect(await post(base, '/reset_prefix_cache?reset_external=1', {})).toEqual({ status: 200, json: { success: true } });
    expect(await held()).toMatchObject({ gpuBlocks: 0, cpuBlocks: 0 });
  });

  it('says AllBlocksCleared after /reset_prefix_cache, and forgets the cache', async () => {
    const r = await startPod();
    const first = await post(r.http[0]!, '/v1/completions', { prompt, max_tokens: 1 });
    expect(await post(r.http[0]!, '/reset_prefix_cache', {})).toEqual({ status: 200, json: { success: true } });
    await waitFor(() => r.messages.some((m) => m.batch.events.some((e) => e.type === 'AllBlocksCleared')), 5000, 'AllBlocksCleared');
    const again = await post(r.http[0]!, '/v1/completions', { prompt, max_tokens: 1 });
    expect((again.json['usage'] as { prompt_tokens_details: { cached_tokens: number } }).prompt_tokens_details.cached_tokens).toBe(0);
    expect(first.status).toBe(200);
  });

  it('reports cached tokens for a repeated prompt and a lower time to first token in its metrics', async () => {
    const r = await startPod();
    const ttftSum = async (): Promise<number> => {
      const text = await (await fetch(`${r.http[0]!}/metrics`)).text();
      return Number(/^vllm:time_to_first_token_seconds_sum\{[^}]*\} (\S+)$/m.exec(text)![1]);
    };
    const long = prompt.repeat(8);
    const cold = await post(r.http[0]!, '/v1/completions', { prompt: long, max_tokens: 1 });
    const afterCold = await ttftSum();
    const warm = await post(r.http[0]!, '/v1/completions', { prompt: long, max_tokens: 1 });
    const warmTtft = (await ttftSum()) - afterCold;
    const usage = (x: { json: Record<string, unknown> }): { prompt_tokens: number; prompt_tokens_details: { cached_tokens: number } } => x.json['usage'] as never;
    expect(usage(cold).prompt_tokens_details.cached_tokens).toBe(0);
    expect(usage(warm).prompt_tokens_details.cached_tokens).toBeGreaterThan(usage(warm).prompt_tokens - 16);
    expect(warmTtft).toBeLessThan(afterCold / 3);
  });

  it('streams chat completions as vLLM does: role chunk, one chunk per token with finish_reason on the last, usage, [DONE]', async () => {
    const r = await startPod();
    const { chunks, done, contentType } = await stream(r.http[0]!, '/v1/chat/completions', { model: 'Qwen/Qwen3-0.6B', messages: [{ role: 'user', content: 'hello' }], max_tokens: 5, stream_options: { include_usage: true } });
    expect(contentType).toBe('text/event-stream; charset=utf-8');
    expect(done).toBe(true);
    expect(chunks.every((c) => c.object === 'chat.completion.chunk')).toBe(true);
    expect(chunks).toHaveLength(1 + 5 + 1);
    expect(chunks[0]!.choices).toEqual([{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]);
    const tokens = chunks.slice(1, 6).map((c) => c.choices[0]!);
    // No empty closing chunk: the last token's chunk carries the finish reason.
    expect(tokens.map((c) => c.finish_reason)).toEqual([null, null, null, null, 'length']);
    expect(tokens.every((c) => typeof c.delta?.content === 'string' && c.delta.content.length > 0)).toBe(true);
    expect(tokens[4]).toMatchObject({ finish_reason: 'length', stop_reason: null });
    expect(chunks[6]).toMatchObject({ choices: [], usage: { completion_tokens: 5, prompt_tokens_details: { cached_tokens: 0 } } });
    // Continuing the last message rather than starting a reply: vLLM answers in that message's role.
    const continued = { messages: [{ role: 'user', content: 'hello' }, { role: 'assistant', content: 'Hi, I' }], continue_final_message: true, add_generation_prompt: false, max_tokens: 2 };
    expect((await stream(r.http[0]!, '/v1/chat/completions', continued)).chunks[0]!.choices[0]!.delta).toEqual({ role: 'assistant', content: '' });
    const asUser = { ...continued, messages: [{ role: 'user', content: 'hello' }] };
    expect(((await post(r.http[0]!, '/v1/chat/completions', asUser)).json['choices'] as { message: { role: string } }[])[0]!.message.role).toBe('user');
  });

  it('streams completions with the finish reason on the last text chunk, and usage only when stream_options asks', async () => {
    const r = await startPod();
    const base = r.http[0]!;
    const plain = await stream(base, '/v1/completions', { prompt: 'hello', max_tokens: 3 });
    expect(plain.done).toBe(true);
    expect(plain.chunks.map((c) => [c.object, c.choices[0]!.finish_reason, (c.choices[0]!.text ?? '').length > 0])).toEqual([
      ['text_completion', null, true],
      ['text_completion', null, true],
      ['text_completion', 'length', true],
    ]);
    expect(plain.chunks.some((c) => c.usage !== undefined)).toBe(false);
    // vLLM: any stream_options object turns usage on (include_usage defaults to true) ...
    const empty = await stream(base, '/v1/completions', { prompt: 'hello', max_tokens: 3, stream_options: {} });
    expect(empty.chunks.at(-1)).toMatchObject({ object: 'text_completion', choices: [], usage: { prompt_tokens: 1, total_tokens: 4, completion_tokens: 3 } });
    // ... unless it is false, which also silences continuous_usage_stats.
    const off = await stream(base, '/v1/completions', { prompt: 'hello', max_tokens: 3, stream_options: { include_usage: false, continuous_usage_stats: true } });
    expect(off.chunks.some((c) => c.usage !== undefined)).toBe(false);
    // Stream options without stream are refused, as vLLM's request validation does.
    const refused = await post(base, '/v1/completions', { prompt: 'hello', max_tokens: 3, stream_options: { include_usage: true } });
    expect(refused).toMatchObject({ status: 400, json: { error: { type: 'Bad Request', param: 'stream_options', code: 400 } } });
    expect((await post(base, '/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }], stream: false, stream_options: { include_usage: true } })).status).toBe(400);
  });

  it('sends the stream\'s headers at once but no chunk until the first token, as vLLM does', async () => {
    const r = await startPod({ maxNumSeqs: 1 });
    const base = r.http[0]!;
    // Occupy the only batch slot (slowed down so it stays there) so the streamed request waits in the queue.
    await post(base, '/sim/faults', { slowdown: 1000 });
    const blocker = new AbortController();
    const busy = fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'busy', max_tokens: 1000 }), signal: blocker.signal }).then((res) => res.text()).catch(() => '');
    await waitFor(async () => ((await (await fetch(`${base}/sim/state`)).json()) as { running: number }).running === 1, 5000, 'the blocker to run');
    const received: Buffer[] = [];
    const ended = new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        res.on('data', (b: Buffer) => received.push(b));
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end(JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, stream: true }));
    });
    await waitFor(async () => ((await (await fetch(`${base}/sim/state`)).json()) as { waiting: number }).waiting === 1, 5000, 'the stream to queue');
    // Two more round trips on other connections: a role chunk written at arrival would be here by now.
    await fetch(`${base}/sim/state`);
    await fetch(`${base}/health`);
    expect(Buffer.concat(received).length).toBe(0);
    await post(base, '/sim/faults', { slowdown: 1 });
    blocker.abort();
    await busy;
    expect(await ended).toBe(200);
    const events = Buffer.concat(received).toString().split('\n\n').filter(Boolean);
    expect(events).toHaveLength(1 + 2 + 1);
    expect(events[0]).toContain('"role":"assistant"');
  });

  it('leaves prompt_tokens_details null (and out of streamed usage) when run without --enable-prompt-tokens-details, as vLLM does', async () => {
    const r = await startPod({ enablePromptTokensDetails: false });
    const base = r.http[0]!;
    const completion = await post(base, '/v1/completions', { prompt, max_tokens: 1 });
    expect(completion.json['usage']).toEqual({ prompt_tokens: expect.any(Number), total_tokens: expect.any(Number), completion_tokens: 1, prompt_tokens_details: null });
    const chat = await post(base, '/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }], max_tokens: 1 });
    expect((chat.json['usage'] as Record<string, unknown>)['prompt_tokens_details']).toBeNull();
    const streamed = await stream(base, '/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }], max_tokens: 1, stream_options: { include_usage: true } });
    expect(Object.keys(streamed.chunks.at(-1)!.usage!)).toEqual(['prompt_tokens', 'total_tokens', 'completion_tokens']);
  });

  it('reports the cached tokens of the last prompt of a multi-prompt completion, as vLLM does', async () => {
    const r = await startPod();
    const base = r.http[0]!;
    const warm = `${prompt} and then some`;
    await post(base, '/v1/completions', { prompt: warm, max_tokens: 1 });
    const cachedOf = async (prompts: string[]): Promise<number> => ((await post(base, '/v1/completions', { prompt: prompts, max_tokens: 1 })).json['usage'] as { prompt_tokens_details: { cached_tokens: number } }).prompt_tokens_details.cached_tokens;
    expect(await cachedOf([warm, 'a cold prompt nobody sent before'])).toBe(0);
    expect(await cachedOf(['another cold prompt', warm])).toBeGreaterThan(0);
  });

  it('puts running usage on every streamed chunk when continuous_usage_stats is asked for, as vLLM does', async () => {
    const r = await startPod();
    const res = await fetch(`${r.http[0]!}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'hello', max_tokens: 3, stream: true, stream_options: { include_usage: true, continuous_usage_stats: true } }),
    });
    const lines = (await res.text()).split('\n\n').filter(Boolean);
    expect(lines.at(-1)).toBe('data: [DONE]');
    const chunks = lines.slice(0, -1).map((l) => JSON.parse(l.slice(6)) as { choices: unknown[]; usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number; prompt_tokens_details?: unknown } });
    expect(chunks.every((c) => c.usage !== undefined)).toBe(true);
    const tokenChunks = chunks.filter((c) => c.choices.length > 0);
    expect(tokenChunks.slice(0, 3).map((c) => c.usage!.completion_tokens)).toEqual([1, 2, 3]);
    expect(tokenChunks[0]!.usage).toEqual({ prompt_tokens: 1, total_tokens: 2, completion_tokens: 1 });
    expect(chunks.at(-1)!.usage).toMatchObject({ completion_tokens: 3, prompt_tokens_details: { cached_tokens: 0 } });
    // Without it, only the final chunk carries usage.
    const plain = await fetch(`${r.http[0]!}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'hello', max_tokens: 3, stream: true, stream_options: { include_usage: true } }) });
    const plainChunks = (await plain.text()).split('\n\n').filter((l) => l && l !== 'data: [DONE]').map((l) => JSON.parse(l.slice(6)) as { usage?: unknown });
    expect(plainChunks.filter((c) => c.usage !== undefined)).toHaveLength(1);
  });

  it('gives each data-parallel rank its own endpoint, event port and rank in every batch', async () => {
    const r = await startPod({ dataParallelSize: 2 });
    await post(r.http[1]!, '/v1/completions', { prompt, max_tokens: 1 });
    const msg = await waitFor(() => r.messages.find((m) => m.batch.events.some((e) => e.type === 'BlockStored')), 5000, 'rank 1 events');
    expect(msg.batch.dataParallelRank).toBe(1);
    expect(msg.topic).toBe(`kv@127.0.0.1:${new URL(r.http[1]!).port}@Qwen/Qwen3-0.6B`);
    expect(r.messages.every((m) => m.batch.dataParallelRank === 1)).toBe(true);
  });

  it('publishes as vLLM 0.34 by default (tagged hashes: the 0.34 LoRA vector; 16-field struct head) and as 0.32 on request', async () => {
    const cases = (readVectorJson('vllm-0.34-engine-hashes.json') as { cases: { name: string; tokens: number[]; lora: { name: string; path: string } | null; expected: { block_hashes: string[] } }[] }).cases;
    const c = cases.find((x) => x.name === 'sha256-seed0-lora')!;
    const lora = `${c.lora!.name}=${c.lora!.path}`;
    const r = await startPod({ pythonHashSeed: '0', loraModules: [lora] });
    await post(r.http[0]!, '/v1/completions', { model: c.lora!.name, prompt: c.tokens, max_tokens: 1 });
    const ev = await waitFor(() => storedEvents(r)[0], 5000, 'a BlockStored');
    expect(Array.from(ev.blockHashes, String)).toEqual(c.expected.block_hashes);
    expect(ev.encoding).toEqual({ layout: 'map', wide: true });
    const old = await startPod({ pythonHashSeed: '0', loraModules: [lora], vllmVersion: '0.32' });
    await post(old.http[0]!, '/v1/completions', { model: c.lora!.name, prompt: c.tokens, max_tokens: 1 });
    const oldEv = await waitFor(() => storedEvents(old)[0], 5000, 'a BlockStored');
    expect(Array.from(oldEv.blockHashes, String)).not.toEqual(c.expected.block_hashes);
    expect(oldEv.encoding).toEqual({ layout: 'map' });
    const older = await startPod({ vllmVersion: '0.23' });
    await post(older.http[0]!, '/v1/completions', { prompt, max_tokens: 1 });
    expect((await waitFor(() => storedEvents(older)[0], 5000, 'a BlockStored')).encoding).toEqual({ layout: 'array', length: 12 });
  });

  it("speaks SGLang with --engine sglang: its map layout, signed hashes, cache_salt on the wire, sglang:* metrics", async () => {
    const r = await startPod({ engine: 'sglang' });
    await post(r.http[0]!, '/v1/completions', { prompt, max_tokens: 1, cache_salt: 'tenant-a' });
    const ev = await waitFor(() => storedEvents(r)[0], 5000, 'a BlockStored');
    expect(ev.encoding).toEqual({ layout: 'map', dialect: 'sglang' });
    expect(ev).toMatchObject({ cacheSalt: 'tenant-a', extraKeys: null, groupIdx: null, medium: 'GPU' });
    const metrics = await (await fetch(`${r.http[0]!}/metrics`)).text();
    expect(metrics).toMatch(/^sglang:num_queue_reqs\{/m);
    expect(metrics).toMatch(/^sglang:num_running_reqs\{/m);
    expect(metrics).toMatch(/^sglang:token_usage\{/m);
    expect(metrics).toMatch(/^sglang:cache_hit_rate\{/m);
    expect(metrics).not.toMatch(/^vllm:/m);
  });

  it('speaks the older array layout with raw digests when configured so', async () => {
    const r = await startPod({ kvEventsLayout: 'array', kvEventsIntHashes: false });
    await post(r.http[0]!, '/v1/completions', { prompt, max_tokens: 1 });
    const ev = await waitFor(() => storedEvents(r)[0], 5000, 'a BlockStored');
    expect(ev.encoding).toEqual({ layout: 'array', length: 12 });
    expect(ev.blockHashDigests?.[0]).toHaveLength(32);
  });

  it('restarts its sequence at 0 when the publisher restarts', async () => {
    const r = await startPod();
    for (let i = 0; i < 6; i++) await post(r.http[0]!, '/v1/completions', { prompt: `${i} ${prompt}`, max_tokens: 1 });
    await waitFor(() => r.messages.length >= 6, 5000, 'events');
    const before = r.messages.at(-1)!.seq;
    expect(before).toBeGreaterThanOrEqual(5n);
    await post(r.http[0]!, '/sim/faults', { restartPublisher: true });
    // Reconnection after the rebind is ZeroMQ's job; keep sending until a message arrives.
    const after = await waitFor(async () => {
      await post(r.http[0]!, '/v1/completions', { prompt: `${Math.random()} ${prompt}`, max_tokens: 1 });
      return r.messages.find((m) => m.seq < before);
    }, 10_000, 'a message after the restart');
    // The batch right after the restart can be missed while the subscriber reconnects (a slow
    // joiner): consumers notice the reset from the lower seq and replay from 0.
    expect(after.seq).toBeLessThan(before);
  });

  it('answers client mistakes with vLLM\'s 4xx error shape', async () => {
    const r = await startPod({ maxModelLen: 128 });
    const unknown = await post(r.http[0]!, '/v1/completions', { model: 'nope', prompt: 'x' });
    expect(unknown).toMatchObject({ status: 404, json: { error: { type: 'NotFoundError', param: 'model', code: 404 } } });
    const long = await post(r.http[0]!, '/v1/completions', { prompt: 'word '.repeat(200), max_tokens: 10 });
    expect(long.status).toBe(400);
    expect((long.json['error'] as { message: string }).message).toMatch(/maximum context length is 128/);
    const bad = await post(r.http[0]!, '/v1/chat/completions', { messages: [] });
    expect(bad.status).toBe(400);
    const raw = await fetch(`${r.http[0]!}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"prompt":' });
    expect(raw.status).toBe(400);
    await post(r.http[0]!, '/sim/faults', { refuseFraction: 1 });
    expect((await post(r.http[0]!, '/v1/completions', { prompt: 'x', max_tokens: 1 })).status).toBe(503);
  });

  it("refuses a request's own chat template with 400 unless run with --trust-request-chat-template, as vLLM does", async () => {
    const hostile = { messages: [{ role: 'user', content: 'hi' }], max_tokens: 1, chat_template: '{% for i in range(30000000) %}{% endfor %}hello' };
    const r = await startPod();
    for (const path of ['/v1/chat/completions', '/v1/chat/completions/render', '/tokenize']) {
      const refused = await post(r.http[0]!, path, hostile);
      expect(refused.status).toBe(400);
      expect((refused.json['error'] as { message: string }).message).toContain('--trust-request-chat-template');
    }
    const viaKwargs = await post(r.http[0]!, '/v1/chat/completions', { ...hostile, chat_template: undefined, chat_template_kwargs: { chat_template: '{{ 1 }}' } });
    expect(viaKwargs.status).toBe(400);
    const trusting = await startPod({ trustRequestChatTemplate: true });
    // Trusted, the same template still fails fast: Jinja2's sandbox caps range() at 100,000 items.
    expect((await post(trusting.http[0]!, '/v1/chat/completions', hostile)).status).toBe(400);
    expect((await post(trusting.http[0]!, '/v1/chat/completions', { ...hostile, chat_template: '{{ messages[0].content }}' })).status).toBe(200);
  });

  it('answers routes, methods, media types and empty prompts with vLLM\'s error bodies', async () => {
    const r = await startPod();
    const base = r.http[0]!;
    const json = async (res: Response): Promise<{ status: number; json: unknown }> => ({ status: res.status, json: await res.json() });
    expect(await json(await fetch(`${base}/v1/nope`))).toEqual({ status: 404, json: { error: { message: 'Not Found', type: 'Not Found', param: null, code: 404 } } });
    expect(await json(await fetch(`${base}/v1/completions`))).toEqual({ status: 405, json: { error: { message: 'Method Not Allowed', type: 'Method Not Allowed', param: null, code: 405 } } });
    expect((await fetch(`${base}/health`, { method: 'HEAD' })).status).toBe(405);
    const text = await json(await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{"prompt":"x"}' }));
    expect(text).toMatchObject({ status: 400, json: { error: { type: 'Bad Request', code: 400 } } });
    expect((text.json as { error: { message: string } }).error.message).toContain("Unsupported Media Type: Only 'application/json' is allowed");
    expect(await post(base, '/v1/completions', { prompt: '' })).toMatchObject({ status: 400, json: { error: { param: 'prompt', type: 'Bad Request' } } });
    expect(await post(base, '/v1/chat/completions', { messages: 'hi' })).toMatchObject({ status: 400, json: { error: { param: 'body.messages', type: 'Bad Request' } } });
    expect((await fetch(`${base}/health`)).status).toBe(200);
  });

  it('lists LoRA adapters as models and tags their events with the adapter', async () => {
    const r = await startPod({ loraModules: ['sql-lora=/adapters/sql', '{"name": "chat-lora", "path": "/adapters/chat", "base_model_name": "Qwen/Qwen3-0.6B"}'] });
    const models = (await (await fetch(`${r.http[0]!}/v1/models`)).json()) as { data: { id: string; root: string; parent: string | null; max_model_len: number | null; permission: { object: string }[] }[] };
    expect(models.data.map((m) => [m.id, m.root, m.parent])).toEqual([
      ['Qwen/Qwen3-0.6B', 'Qwen/Qwen3-0.6B', null],
      ['sql-lora', '/adapters/sql', 'Qwen/Qwen3-0.6B'],
      ['chat-lora', '/adapters/chat', 'Qwen/Qwen3-0.6B'],
    ]);
    // vLLM's cards: adapters have no max_model_len; every card lists one model_permission.
    expect(models.data.map((m) => m.max_model_len)).toEqual([expect.any(Number), null, null]);
    expect(models.data.every((m) => m.permission.length === 1 && m.permission[0]!.object === 'model_permission')).toBe(true);
    await post(r.http[0]!, '/v1/completions', { model: 'sql-lora', prompt, max_tokens: 1, cache_salt: 'tenant-a' });
    const ev = await waitFor(() => storedEvents(r)[0], 5000, 'a BlockStored');
    expect(ev.loraName).toBe('sql-lora');
    expect(ev.extraKeys?.[0]).toEqual(['sql-lora', 'tenant-a']);
  });

  it('renders completion and chat prompts to token ids like vLLM\'s render endpoints', async () => {
    const r = await startPod();
    const { json: tok } = await post(r.http[0]!, '/tokenize', { prompt: 'hello world' });
    const completions = await fetch(`${r.http[0]!}/v1/completions/render`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: ['hello world', 'bye'] }) });
    const rendered = (await completions.json()) as { token_ids: number[] }[];
    expect(rendered).toHaveLength(2);
    expect(rendered[0]!.token_ids).toEqual(tok['tokens']);
    const chat = await post(r.http[0]!, '/v1/chat/completions/render', { messages: [{ role: 'user', content: 'hi' }], cache_salt: 's' });
    const { json: chatTok } = await post(r.http[0]!, '/tokenize', { messages: [{ role: 'user', content: 'hi' }] });
    expect(chat.json['token_ids']).toEqual(chatTok['tokens']);
    expect(chat.json['cache_salt']).toBe('s');
    // vLLM's GenerateRequest, key for key, with its request id prefixes.
    const keys = ['request_id', 'token_ids', 'features', 'sampling_params', 'model', 'stream', 'stream_options', 'cache_salt', 'priority', 'kv_transfer_params'];
    expect(Object.keys(chat.json)).toEqual(keys);
    expect(Object.keys(rendered[0]!)).toEqual(keys);
    expect(chat.json['request_id']).toMatch(/^chatcmpl-[0-9a-f]{32}$/);
    expect((rendered[0] as unknown as { request_id: string }).request_id).toMatch(/^cmpl-[0-9a-f]{32}$/);
  });

  it('exposes vLLM\'s metric names', async () => {
    const r = await startPod();
    const text = await (await fetch(`${r.http[0]!}/metrics`)).text();
    for (const name of ['vllm:num_requests_running', 'vllm:num_requests_waiting', 'vllm:kv_cache_usage_perc', 'vllm:prefix_cache_queries_total', 'vllm:prefix_cache_hits_total', 'vllm:time_to_first_token_seconds_bucket']) {
      expect(text).toContain(name);
    }
    expect(text).toMatch(/vllm:cache_config_info\{[^}]*block_size="16"[^}]*num_gpu_blocks="4096"/);
    // Every finish reason has its series from the start; e2e latency uses vLLM's request buckets.
    for (const reason of ['stop', 'length', 'abort']) expect(text).toMatch(new RegExp(`^vllm:request_success_total\\{[^}]*finished_reason="${reason}"[^}]*\\} 0$`, 'm'));
    expect(text).toMatch(/^vllm:e2e_request_latency_seconds_bucket\{le="0.3",/m);
    // vLLM registers the LoRA gauge only when LoRA serving is on.
    expect(text).not.toContain('vllm:lora_requests_info');
    const lora = await startPod({ loraModules: ['sql-lora=/adapters/sql'] });
    expect(await (await fetch(`${lora.http[0]!}/metrics`)).text()).toMatch(/^vllm:lora_requests_info\{max_lora="4",/m);
  });
});

