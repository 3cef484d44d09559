/** Messages between the pool and its tokenizer threads (structured-cloned; ids transferred). */
import type { TokenizationErrorCode } from '../errors.js';
import type { PromptInput } from '../prompt-tokenizer.js';

export type ToWorker =
  | { type: 'tokenize'; id: number; spec: string; input: PromptInput }
  | { type: 'load'; id: number; spec: string }
  /** Test-only: makes the thread die from an uncaught exception, the way a real crash would. */
  | { type: 'crash' };

export type FromWorker =
  /** Timings (ms) of a tokenization: template and encode, measured on the thread. */
  | { id: number; ok: true; tokenIds: Uint32Array | null; templateMs?: number; encodeMs?: number }
  | { id: number; ok: false; code: TokenizationErrorCode; message: string };
