/** Turning a vLLM error answer into a TokenizationError with the server's own words. */
import { isPlainObject } from '../config.js';
import { TokenizationError } from '../errors.js';

const MAX_MESSAGE_CHARS = 2000;

/** vLLM ≥ 0.33: {"error": {"message"}}; older: {"message"}; FastAPI itself: {"detail"}. */
function serverMessage(body: unknown): { message: string; fromVllm: boolean } | null {
  if (!isPlainObject(body)) return null;
  const error = body['error'];
  if (isPlainObject(error) && typeof error['message'] === 'string') return { message: error['message'], fromVllm: true };
  if (typeof body['message'] === 'string') return { message: body['message'], fromVllm: true };
  const detail = body['detail'];
  if (typeof detail === 'string') return { message: detail, fromVllm: false };
  if (Array.isArray(detail)) {
    const parts = detail.map((d) => (isPlainObject(d) && typeof d['msg'] === 'string' ? `${JSON.stringify(d['loc'] ?? [])}: ${d['msg']}` : JSON.stringify(d)));
    return { message: parts.join('; '), fromVllm: false };
  }
  return null;
}

function parsed(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export function renderHttpError(status: number, bodyText: string, endpoint: string): TokenizationError {
  const found = serverMessage(parsed(bodyText));
  const message = (found?.message ?? bodyText.trim()).slice(0, MAX_MESSAGE_CHARS);
  if (status === 400 || status === 422) return new TokenizationError('INVALID_REQUEST', message || `${endpoint} rejected the request (${status})`);
  // A 404 without vLLM's error body is a server without render endpoints, not an unknown model.
  if (status === 404 && found?.fromVllm === true) return new TokenizationError('UNKNOWN_MODEL', message);
  return new TokenizationError('RENDER_UNAVAILABLE', `${endpoint} answered ${status}${message ? `: ${message}` : ''}`);
}
