/** A tokenizer thread: loads tokenizers on first use and answers the pool's requests in order. */
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
  return { id, ok: false, code: 'INTERNAL', message: `tokenizer thread failed: ${messageOf(err)}` };
}

async function handle(message: Extract<ToWorker, { type: 'tokenize' | 'load' }>): Promise<void> {
  try {
    const tokenizer = await loader.load(message.spec);
    if (message.type === 'load') {
      port!.postMessage({ id: message.id, ok: true, tokenIds: null } satisfies FromWorker);
      return;
    }
    const timings = { templateMs: 0, encodeMs: 0, hashMs: 0 };
    const input = message.input.kind === 'chat-body' ? inputFromBody(message.input.body) : message.input;
    const { ids, requestKeys } = tokenizeLocally(tokenizer, input, timings, message.keys ? { ...message.keys, keyer } : undefined);
    const transfer: ArrayBuffer[] = requestKeys ? [ids.buffer, requestKeys.buffer] : [ids.buffer];
    port!.postMessage({ id: message.id, ok: true, tokenIds: ids, requestKeys, ...timings } satisfies FromWorker, transfer);
  } catch (err) {
    port!.postMessage(failure(message.id, err));
  }
}

port.on('message', (message: ToWorker) => {
  if (message.type === 'crash') throw new Error('tokenizer thread crash requested by a test');
  void handle(message);
});
