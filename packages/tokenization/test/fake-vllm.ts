/** A real HTTP server that answers render requests the way vLLM 0.33 does, scripted per test. */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedRequest {
  path: string;
  headers: IncomingHttpHeaders;
  /** The client's port: requests on one kept-alive connection share it. */
  clientPort: number;
  body: Record<string, unknown>;
}

export type Answer = { status: number; json: unknown } | { status: number; text: string } | 'hang';

export interface FakeVllm {
  url: string;
  received: ReceivedRequest[];
  answer: (request: ReceivedRequest) => Answer;
  close(): Promise<void>;
}

/** A GenerateRequest as vLLM 0.33's render endpoints serialise it (fields kvix ignores included). */
export function generateRequest(tokenIds: number[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    request_id: 'chatcmpl-render-1',
    token_ids: tokenIds,
    token_offsets: null,
    features: null,
    content_parts: null,
    sampling_params: { max_tokens: 100, temperature: 1.0 },
    model: 'served-model',
    reasoning_ended: null,
    stream: false,
    cache_salt: null,
    priority: 0,
    kv_transfer_params: null,
    ...extra,
  };
}

/** vLLM 0.33: a list for completions, one object for chat, the request's salt echoed. */
export function vllmAnswer(request: ReceivedRequest, tokenIds: number[] = [9707, 11, 1879]): Answer {
  const one = generateRequest(tokenIds, { cache_salt: request.body['cache_salt'] ?? null });
  return { status: 200, json: request.path.endsWith('/v1/completions/render') ? [one] : one };
}

export function vllmError(status: number, message: string, type = 'BadRequestError'): Answer {
  return { status, json: { error: { message, type, param: null, code: status } } };
}

export async function startFakeVllm(): Promise<FakeVllm> {
  const fake: FakeVllm = {
    url: '',
    received: [],
    answer: (request) => vllmAnswer(request),
    close: async () => undefined,
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const request: ReceivedRequest = {
        path: req.url ?? '',
        headers: req.headers,
        clientPort: req.socket.remotePort ?? 0,
        body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>,
      };
      fake.received.push(request);
      const answer = fake.answer(request);
      if (answer === 'hang') return;
      if ('json' in answer) {
        res.writeHead(answer.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(answer.json));
      } else {
        res.writeHead(answer.status, { 'content-type': 'text/plain' });
        res.end(answer.text);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  fake.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return fake;
}
