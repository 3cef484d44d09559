import type { ScorePrompt } from '@kvix/scoring';
import { chatPromptFromBody } from '@kvix/tokenization';

/** A request the router refuses before scheduling; `status` is what the client gets. */
export class RequestError extends Error {
  override readonly name = 'RequestError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface ParsedRequestBody {
  /** The body as parsed (aliasing rewrites its model). */
  json: Record<string, unknown>;
  model: string;
  kind: 'completion' | 'chat' | 'other';
  /** What the prefix scorers read; null when the body has no prompt. */
  prompt: ScorePrompt | null;
  stream: boolean;
  cacheSalt: string | null;
}

const isTokenList = (v: unknown): v is number[] => Array.isArray(v) && v.length > 0 && v.every((t) => Number.isInteger(t) && (t as number) >= 0);

export function endpointKind(path: string): ParsedRequestBody['kind'] {
  const p = path.split('?')[0]!;
  if (p.endsWith('/v1/chat/completions')) return 'chat';
  if (p.endsWith('/v1/completions')) return 'completion';
  return 'other';
}

/**
 * The parts of an OpenAI request body routing needs. A body that is not JSON, or a completions /
 * chat body without its prompt or messages, is a client mistake (400); other endpoints are
 * routed on load only. Returns null for a request without a body.
 */
export function parseOpenAiBody(path: string, body: Buffer | null): ParsedRequestBody | null {
  if (body === null || body.length === 0) return null;
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new RequestError(400, 'INVALID_JSON', `the request body is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new RequestError(400, 'INVALID_REQUEST', 'the request body must be a JSON object');
  const obj = json as Record<string, unknown>;
  const kind = endpointKind(path);
  const model = obj['model'];
  if (typeof model !== 'string' || model === '') throw new RequestError(400, 'INVALID_REQUEST', 'model is required (a non-empty string)');
  const cacheSalt = typeof obj['cache_salt'] === 'string' ? obj['cache_salt'] : null;
  const stream = obj['stream'] === true;
  let prompt: ScorePrompt | null = null;
  if (kind === 'completion') {
    const p = obj['prompt'];
    // A batch of prompts is scored by its first: the pod that holds it is still the best guess.
    const first = Array.isArray(p) && p.length > 0 && !isTokenList(p) ? p[0] : p;
    if (typeof first === 'string') prompt = { kind: 'completion', prompt: first, ...(typeof obj['add_special_tokens'] === 'boolean' ? { addSpecialTokens: obj['add_special_tokens'] } : {}) };
    else if (isTokenList(first)) prompt = { kind: 'tokens', tokenIds: first };
    else throw new RequestError(400, 'INVALID_REQUEST', 'prompt must be a string, a list of token ids, or a list of those');
  } else if (kind === 'chat') {
    const chat = chatPromptFromBody(obj);
    if (chat === null) throw new RequestError(400, 'INVALID_REQUEST', 'messages must be a non-empty list of objects with a role');
    // The body goes along: a tokenizer thread reads the prompt from its bytes (cheaper than a clone of the messages).
    prompt = { kind: 'chat', messages: chat.messages, options: chat.options, body };
  }
  return { json: obj, model, kind, prompt, stream, cacheSalt };
}
