import { throwIfAborted } from '../abort.js';
import { TokenizationError, messageOf } from '../errors.js';
import { checkPromptInput } from '../prompt-input.js';
import type { PromptInput, PromptTokenizer, TokenizedPrompt, TokenizeOptions } from '../prompt-tokenizer.js';
import { JsonPoster } from './json-poster.js';
import { renderHttpError } from './render-error.js';
import { renderRequest } from './render-request.js';
import { isMalformedAnswer, readRenderAnswer, type RenderedPrompt } from './render-response.js';

export interface RenderClientOptions {
  /** The vLLM server's base URL, e.g. `http://vllm:8000` (a path prefix is kept). */
  url: string;
  /** Deadline for each request, connection included. Default 5000. */
  timeoutMs?: number;
  /** Sent with every request, e.g. `{ authorization: 'Bearer …' }`. */
  headers?: Readonly<Record<string, string>>;
  /** Connections kept open to the server. Default 32. */
  maxConnections?: number;
}

function configError(message: string): TokenizationError {
  return new TokenizationError('INVALID_CONFIG', message);
}

function parseBaseUrl(url: unknown): URL {
  if (typeof url !== 'string') throw configError('url must be a string such as http://vllm:8000');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw configError(`url ${JSON.stringify(url)} is not a URL; expected e.g. http://vllm:8000`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw configError(`url ${url} must be http or https`);
  if (parsed.search !== '' || parsed.hash !== '') throw configError(`url ${url} must not have a query or fragment`);
  return parsed;
}

/**
 * The token ids one vLLM server computes for a request, from its render endpoints — exact for
 * any model vLLM serves, multimodal included, at the price of a round trip.
 */
export class RenderClient implements PromptTokenizer {
  readonly url: string;
  private readonly poster: JsonPoster;
  private closed = false;

  constructor(options: RenderClientOptions) {
    const base = parseBaseUrl(options.url);
    const timeoutMs = options.timeoutMs ?? 5000;
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1) throw configError(`timeoutMs must be a positive integer, not ${String(timeoutMs)}`);
    const maxConnections = options.maxConnections ?? 32;
    if (!Number.isSafeInteger(maxConnections) || maxConnections < 1) throw configError(`maxConnections must be a positive integer, not ${String(maxConnections)}`);
    const headers = options.headers ?? {};
    for (const [name, value] of Object.entries(headers)) {
      if (typeof value !== 'string') throw configError(`header ${name} must be a string`);
    }
    this.url = base.href.replace(/\/+$/, '');
    this.poster = new JsonPoster(base, { timeoutMs, headers, maxConnections });
  }

  async tokenize(model: string, input: PromptInput, options: TokenizeOptions = {}): Promise<TokenizedPrompt> {
    if (this.closed) throw new TokenizationError('CLOSED', `the render client for ${this.url} is closed`);
    if (typeof model !== 'string' || model === '') throw new TokenizationError('INVALID_REQUEST', 'the model name must be a non-empty string');
    checkPromptInput(input);
    throwIfAborted(options.signal);
    // vLLM validates the salt; sending it as given keeps both sides' answers the same.
    const requestSalt = options.cacheSalt ?? null;
    const { path, body } = renderRequest(model, input, requestSalt);
    let json: string;
    try {
      json = JSON.stringify(body);
    } catch (err) {
      throw new TokenizationError('INVALID_REQUEST', `the request cannot be serialised as JSON: ${messageOf(err)}`, { cause: err });
    }
    const endpoint = `${this.url}${path}`;
    const answer = await this.poster.post(path, json, options.signal);
    if (answer.status !== 200) throw renderHttpError(answer.status, answer.body, endpoint);
    let rendered: RenderedPrompt;
    try {
      rendered = readRenderAnswer(JSON.parse(answer.body));
    } catch (err) {
      if (err instanceof TokenizationError) throw err;
      const why = isMalformedAnswer(err) ? err.message : `not JSON (${messageOf(err)})`;
      throw new TokenizationError('RENDER_UNAVAILABLE', `${endpoint} answered something that is not a GenerateRequest: ${why}`, { cause: err });
    }
    return {
      tokenIds: rendered.tokenIds,
      multimodal: rendered.multimodal,
      cacheSalt: typeof rendered.cacheSalt === 'string' ? rendered.cacheSalt : requestSalt,
      source: 'render',
      cached: false,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.poster.close();
  }
}
