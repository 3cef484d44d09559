import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RenderClient, type PromptInput } from '../src/index.js';
import { generateRequest, startFakeVllm, vllmAnswer, vllmError, type FakeVllm } from './fake-vllm.js';
import { failure } from './failure.js';

const hello: PromptInput = { kind: 'completion', prompt: 'Hello, world' };
const chat: PromptInput = { kind: 'chat', messages: [{ role: 'user', content: 'hi' }] };


let vllm: FakeVllm;
let client: RenderClient;

beforeAll(async () => {
  vllm = await startFakeVllm();
});

afterAll(async () => {
  await vllm.close();
});

beforeEach(() => {
  vllm.received.length = 0;
  vllm.answer = (request) => vllmAnswer(request);
  client = new RenderClient({ url: vllm.url });
});

afterEach(async () => {
  await client.close();
});

describe('rendering a completion prompt', () => {
  it('posts the prompt to /v1/completions/render and reads the one GenerateRequest of the list', async () => {
    vllm.answer = (request) => vllmAnswer(request, [9707, 11, 1879, 0]);
    const result = await client.tokenize('my-model', { kind: 'completion', prompt: 'Hello, world', addSpecialTokens: false }, { cacheSalt: 'tenant-1' });
    expect(Array.from(result.tokenIds)).toEqual([9707, 11, 1879, 0]);
    expect(result.tokenIds).toBeInstanceOf(Uint32Array);
    expect(result).toMatchObject({ multimodal: [], cacheSalt: 'tenant-1', source: 'render', cached: false });
    expect(vllm.received).toHaveLength(1);
    expect(vllm.received[0]!.path).toBe('/v1/completions/render');
    expect(vllm.received[0]!.body).toEqual({ model: 'my-model', prompt: 'Hello, world', add_special_tokens: false, cache_salt: 'tenant-1' });
  });

  it("leaves options the caller did not set to vLLM's defaults", async () => {
    await client.tokenize('my-model', hello);
    expect(vllm.received[0]!.body).toEqual({ model: 'my-model', prompt: 'Hello, world' });
  });

  it('rejects a prompt that renders to several prompts', async () => {
    vllm.answer = () => ({ status: 200, json: [generateRequest([1]), generateRequest([2])] });
    const err = await failure(client.tokenize('my-model', hello));
    expect(err.code).toBe('INVALID_REQUEST');
    expect(err.message).toContain('2 prompts');
  });
});

describe('rendering a chat request', () => {
  it('posts messages and every template option under the names vLLM uses, and reads the single object', async () => {
    vllm.answer = (request) => vllmAnswer(request, [151644, 872, 198]);
    const tools = [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }];
    const messages = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'hi' },
    ];
    const result = await client.tokenize('my-model', {
      kind: 'chat',
      messages,
      options: {
        tools,
        addGenerationPrompt: false,
        continueFinalMessage: true,
        chatTemplate: '{{ messages }}',
        chatTemplateKwargs: { enable_thinking: false },
        addSpecialTokens: true,
      },
    });
    expect(Array.from(result.tokenIds)).toEqual([151644, 872, 198]);
    expect(result.cacheSalt).toBeNull();
    expect(vllm.received[0]!.path).toBe('/v1/chat/completions/render');
    expect(vllm.received[0]!.body).toEqual({
      model: 'my-model',
      messages,
      tools,
      add_generation_prompt: false,
      continue_final_message: true,
      chat_template: '{{ messages }}',
      chat_template_kwargs: { enable_thinking: false },
      add_special_tokens: true,
    });
  });

  it('accepts a list from the chat endpoint and an object from the completions endpoint', async () => {
    vllm.answer = (request) => ({ status: 200, json: request.path.includes('chat') ? [generateRequest([5, 6])] : generateRequest([7, 8]) });
    expect(Array.from((await client.tokenize('m', chat)).tokenIds)).toEqual([5, 6]);
    expect(Array.from((await client.tokenize('m', hello)).tokenIds)).toEqual([7, 8]);
  });

  it('merges the multimodal items of every modality into one list ordered by position', async () => {
    vllm.answer = () => ({
      status: 200,
      json: generateRequest(Array.from({ length: 40 }, (_, i) => i), {
        features: {
          mm_hashes: { image: ['img-b', 'img-a'], audio: ['aud-1'] },
          mm_placeholders: {
            image: [
              { offset: 30, length: 8 },
              { offset: 2, length: 10 },
            ],
            audio: [{ offset: 15, length: 5 }],
          },
          kwargs_data: null,
          mm_metadata: null,
        },
      }),
    });
    const result = await client.tokenize('vl-model', chat);
    expect(result.multimodal).toEqual([
      { identifier: 'img-a', offset: 2, length: 10 },
      { identifier: 'aud-1', offset: 15, length: 5 },
      { identifier: 'img-b', offset: 30, length: 8 },
    ]);
  });

  it("reports the salt vLLM echoed, and the request's own when the answer carries none", async () => {
    vllm.answer = () => ({ status: 200, json: generateRequest([1], { cache_salt: 'engine-salt' }) });
    expect((await client.tokenize('m', chat, { cacheSalt: 'request-salt' })).cacheSalt).toBe('engine-salt');
    vllm.answer = () => {
      const { cache_salt: _drop, ...rest } = generateRequest([1]);
      return { status: 200, json: rest };
    };
    expect((await client.tokenize('m', chat, { cacheSalt: 'request-salt' })).cacheSalt).toBe('request-salt');
  });
});

describe('vLLM errors', () => {
  it("turns a 400 into INVALID_REQUEST with vLLM's own message (0.33 error body)", async () => {
    const message = "This model's maximum context length is 40960 tokens. However, your request has 50000 input tokens.";
    vllm.answer = () => vllmError(400, message);
    const err = await failure(client.tokenize('m', hello));
    expect(err.code).toBe('INVALID_REQUEST');
    expect(err.message).toBe(message);
  });

  it('reads the flat error body of older vLLM versions', async () => {
    vllm.answer = () => ({ status: 400, json: { object: 'error', message: 'Cannot set both `continue_final_message` and `add_generation_prompt` to True.', type: 'BadRequestError', code: 400 } });
    const err = await failure(client.tokenize('m', chat));
    expect(err.code).toBe('INVALID_REQUEST');
    expect(err.message).toBe('Cannot set both `continue_final_message` and `add_generation_prompt` to True.');
  });

  it('turns a 422 validation error into INVALID_REQUEST', async () => {
    vllm.answer = () => ({ status: 422, json: { detail: [{ loc: ['body', 'messages'], msg: 'Field required', type: 'missing' }] } });
    const err = await failure(client.tokenize('m', chat));
    expect(err.code).toBe('INVALID_REQUEST');
    expect(err.message).toContain('Field required');
  });

  it('turns a 404 for the model into UNKNOWN_MODEL', async () => {
    vllm.answer = () => vllmError(404, 'The model `nope` does not exist. Valid aliases: served-model.', 'NotFoundError');
    const err = await failure(client.tokenize('nope', hello));
    expect(err.code).toBe('UNKNOWN_MODEL');
    expect(err.message).toContain('The model `nope` does not exist');
  });

  it('tells a server without render endpoints apart from an unknown model', async () => {
    vllm.answer = () => ({ status: 404, json: { detail: 'Not Found' } });
    const err = await failure(client.tokenize('m', hello));
    expect(err.code).toBe('RENDER_UNAVAILABLE');
    expect(err.message).toContain(`${vllm.url}/v1/completions/render`);
  });

  it('turns a 5xx into RENDER_UNAVAILABLE naming the endpoint and the cause', async () => {
    vllm.answer = () => vllmError(500, 'EngineCore encountered an issue', 'InternalServerError');
    const err = await failure(client.tokenize('m', chat));
    expect(err.code).toBe('RENDER_UNAVAILABLE');
    expect(err.message).toContain(`${vllm.url}/v1/chat/completions/render`);
    expect(err.message).toContain('500');
    expect(err.message).toContain('EngineCore encountered an issue');
  });

  it('treats an answer that is not JSON, or not a GenerateRequest, as RENDER_UNAVAILABLE', async () => {
    vllm.answer = () => ({ status: 200, text: '<html>gateway</html>' });
    expect((await failure(client.tokenize('m', hello))).code).toBe('RENDER_UNAVAILABLE');
    vllm.answer = () => ({ status: 200, json: generateRequest([1, -2, 3]) });
    const bad = await failure(client.tokenize('m', hello));
    expect(bad.code).toBe('RENDER_UNAVAILABLE');
    expect(bad.message).toContain('token_ids[1]');
    vllm.answer = () => ({ status: 200, json: generateRequest([1, 2], { features: { mm_hashes: { image: ['a', 'b'] }, mm_placeholders: { image: [{ offset: 0, length: 1 }] } } }) });
    expect((await failure(client.tokenize('m', chat))).code).toBe('RENDER_UNAVAILABLE');
  });
});

describe('connections', () => {
  it('fails with RENDER_UNAVAILABLE naming the URL when nothing listens there', async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const closedPort = new RenderClient({ url: `http://127.0.0.1:${port}` });
    const err = await failure(closedPort.tokenize('m', hello));
    await closedPort.close();
    expect(err.code).toBe('RENDER_UNAVAILABLE');
    expect(err.message).toContain(`http://127.0.0.1:${port}/v1/completions/render`);
    expect(err.message).toContain('ECONNREFUSED');
  });

  it('gives up on a server that does not answer in time', async () => {
    vllm.answer = () => 'hang';
    const impatient = new RenderClient({ url: vllm.url, timeoutMs: 150 });
    const err = await failure(impatient.tokenize('m', chat));
    await impatient.close();
    expect(err.code).toBe('RENDER_UNAVAILABLE');
    expect(err.message).toContain('did not answer within 150 ms');
  });

  it("stops waiting when the caller's signal fires", async () => {
    vllm.answer = () => 'hang';
    const controller = new AbortController();
    const pending = client.tokenize('m', chat, { signal: controller.signal });
    controller.abort();
    expect((await failure(pending)).code).toBe('ABORTED');
  });

  it('keeps one connection open across sequential requests', async () => {
    for (let i = 0; i < 5; i++) await client.tokenize('m', hello);
    expect(new Set(vllm.received.map((r) => r.clientPort)).size).toBe(1);
  });

  it('sends the configured headers and keeps a path prefix of the base URL', async () => {
    const proxied = new RenderClient({ url: `${vllm.url}/pods/a/`, headers: { authorization: 'Bearer secret' } });
    await proxied.tokenize('m', hello);
    await proxied.close();
    expect(vllm.received[0]!.path).toBe('/pods/a/v1/completions/render');
    expect(vllm.received[0]!.headers['authorization']).toBe('Bearer secret');
  });

  it('refuses a base URL that is not http(s)', () => {
    expect(() => new RenderClient({ url: 'vllm:8000' })).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG' }));
    expect(() => new RenderClient({ url: 'not a url' })).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG' }));
  });

  it('fails with CLOSED once closed', async () => {
    await client.close();
    expect((await failure(client.tokenize('m', hello))).code).toBe('CLOSED');
  });
});
