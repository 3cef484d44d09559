/**
 * A tokenizer thread: loads tokenizers on first use and answers the pool's requests strictly in
 * the order they arrive, one at a time, saying when it starts each one — so the pool knows which
 * request a thread is busy with, and that every later one has not begun.
 */
import { parentPort } from 'node:worker_threads';
import { TokenizationError, messageOf } from '../errors.js';
import { chatPromptFromBody } from '../chat-body.js';
import type { PromptInput } from '../prompt-tokenizer.js';
import type { FromWorker, ToWorker } from './protocol.js';
import { TokenizerLoader } from './tokenizer-loader.js';
import { LocalKeyer, tokenizeLocally } from './tokenize-locally.js';

const port = parentPort;
if (port === null) throw new Error('tokenize-worker must run as a worker thread');

const loader = new TokenizerLoader();
const utf8 = new TextDecoder();

/** The chat prompt the router read from the same body (it checked the body before sending it). */
function inputFromBody(body: Uint8Array): PromptInput {
  const prompt = chatPromptFromBody(JSON.parse(utf8.decode(body)) as Record<string, unknown>);
  if (prompt === null) throw new TokenizationError('INVALID_REQUEST', 'the request body has no chat messages');
  return { kind: 'chat', ...prompt };
}
/** Request keys per conversation, incrementally (the pool sends a conversation's turns to one thread). */
const keyer = new LocalKeyer();

function failure(id: number, err: unknown): FromWorker {
  if (err instanceof TokenizationError) return { id, ok: false, code: err.code, message: err.message };
  // V8 gives up on a string or array it cannot grow, rather than on the heap, well before the limit.
  if (err instanceof RangeError) return { id, ok: false, code: 'PROMPT_TOO_LONG', message: `the prompt grew too large to tokenize: ${err.message}` };
  return { id, ok: false, code: 'INTERNAL', message: `tokenizer thread failed: ${messageOf(err)}` };
}

async function handle(message: Extract<ToWorker, { type: 'tokenize' | 'load' }>): Promise<void> {
  try {
    const tokenizer = await loader.load(message.spec);
    if (message.type === 'load') {
      port!.postMessage({ id: message.id, ok: true, tokenIds: null } satisfies FromWorker);
      return;
    }
    // Queued past its deadline (behind a slow request, or a tokenizer loading): nobody waits for it.
    if (message.limits.deadline !== null && Date.now() >= message.limits.deadline) {
      port!.postMessage({ id: message.id, ok: false, code: 'DEADLINE_EXCEEDED', message: 'the tokenization deadline passed before a thread could start it' } satisfies FromWorker);
      return;
    }
    port!.postMessage({ id: message.id, started: true } satisfies FromWorker);
    const timings = { templateMs: 0, encodeMs: 0, hashMs: 0 };
    const input = message.input.kind === 'chat-body' ? inputFromBody(message.input.body) : message.input;
    const { ids, requestKeys } = tokenizeLocally(tokenizer, input, timings, message.keys ? { ...message.keys, keyer } : undefined, message.limits);
    const transfer: ArrayBuffer[] = requestKeys ? [ids.buffer, requestKeys.buffer] : [ids.buffer];
    port!.postMessage({ id: message.id, ok: true, tokenIds: ids, requestKeys, ...timings } satisfies FromWorker, transfer);
  } catch (err) {
    port!.postMessage(failure(message.id, err));
  }
}

let queue: Promise<void> = Promise.resolve();
port.on('message', (message: ToWorker) => {
  if (message.type === 'crash') throw new Error('tokenizer thread crash requested by a test');
  queue = queue.then(() => handle(message));
});
