/** JSON POSTs to one server over kept-alive connections, with a deadline per request. */
import http from 'node:http';
import https from 'node:https';
import { TokenizationError, messageOf } from '../errors.js';

export interface PostResult {
  status: number;
  body: string;
}

export interface JsonPosterOptions {
  timeoutMs: number;
  headers: Readonly<Record<string, string>>;
  maxConnections: number;
}

/** A 131,072-token answer is ~1 MB of JSON; anything far larger is not a render answer. */
const MAX_ANSWER_BYTES = 64 * 2 ** 20;
/** Below uvicorn's 5 s keep-alive, so a connection is rarely reused just as the server closes it. */
const IDLE_SOCKET_MS = 4000;

class Deadline extends Error {}
class TooLarge extends Error {}

export class JsonPoster {
  private readonly agent: http.Agent;
  private readonly request: typeof http.request;
  private readonly basePath: string;

  constructor(
    /** The server's base URL, validated by the caller; a path prefix (behind a proxy) is kept. */
    private readonly base: URL,
    private readonly options: JsonPosterOptions,
  ) {
    const secure = base.protocol === 'https:';
    const agentOptions = { keepAlive: true, maxSockets: options.maxConnections, timeout: IDLE_SOCKET_MS, scheduling: 'lifo' as const };
    this.agent = secure ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
    this.request = secure ? https.request : http.request;
    this.basePath = base.pathname.replace(/\/+$/, '');
  }

  /** Rejects with RENDER_UNAVAILABLE (refused, reset, deadline) or ABORTED (the caller's signal). */
  async post(path: string, json: string, signal?: AbortSignal): Promise<PostResult> {
    const url = `${this.base.origin}${this.basePath}${path}`;
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(new Deadline()), this.options.timeoutMs);
    const combined = signal === undefined ? deadline.signal : AbortSignal.any([signal, deadline.signal]);
    try {
      try {
        return await this.once(path, json, combined);
      } catch (err) {
        // Node's advice for kept-alive sockets: a request on a reused socket the server had just
        // closed fails with a reset, and is safe to send again (rendering has no side effects).
        if (!(err instanceof RetryableReset) || combined.aborted) throw err;
        return await this.once(path, json, combined);
      }
    } catch (err) {
      if (signal?.aborted) throw new TokenizationError('ABORTED', 'the tokenization was aborted', { cause: signal.reason });
      if (deadline.signal.aborted) throw new TokenizationError('RENDER_UNAVAILABLE', `${url} did not answer within ${this.options.timeoutMs} ms`);
      if (err instanceof TooLarge) throw new TokenizationError('RENDER_UNAVAILABLE', `${url} answered with more than ${MAX_ANSWER_BYTES} bytes`);
      const cause = err instanceof RetryableReset ? err.cause : err;
      throw new TokenizationError('RENDER_UNAVAILABLE', `${url} is unreachable: ${messageOf(cause)}`, { cause });
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    this.agent.destroy();
  }

  private once(path: string, json: string, signal: AbortSignal): Promise<PostResult> {
    return new Promise<PostResult>((resolve, reject) => {
      const body = Buffer.from(json, 'utf8');
      const req = this.request({
        protocol: this.base.protocol,
        hostname: this.base.hostname,
        port: this.base.port,
        path: `${this.basePath}${path}`,
        method: 'POST',
        agent: this.agent,
        signal,
        headers: {
          ...this.options.headers,
          'content-type': 'application/json',
          accept: 'application/json',
          'content-length': body.length,
        },
      });
      req.on('error', (err) => {
        const code = (err as NodeJS.ErrnoException).code;
        reject(req.reusedSocket && (code === 'ECONNRESET' || code === 'EPIPE') ? new RetryableReset(err) : err);
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_ANSWER_BYTES) {
            res.destroy();
            reject(new TooLarge());
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
        res.on('close', () => {
          if (!res.complete) reject(new Error('the connection closed before the answer was complete'));
        });
      });
      req.end(body);
    });
  }
}

class RetryableReset extends Error {
  constructor(override readonly cause: Error) {
    super(cause.message);
  }
}
