/** Messages between the pool and its tokenizer threads (structured-cloned; ids transferred). */
import type { TokenizationErrorCode } from '../errors.js';
import type { PromptInput, RequestKeySpec } from '../prompt-tokenizer.js';
import type { PromptLimits } from './tokenize-locally.js';

/** A chat prompt sent as its request body's bytes (the thread reads messages and options from them). */
export interface ChatBodyInput {
  kind: 'chat-body';
  body: Uint8Array;
}

export type ToWorker =
  /** `keys`: compute the request keys too (with the request's cache salt on block 0). */
  | { type: 'tokenize'; id: number; spec: string; input: PromptInput | ChatBodyInput; limits: PromptLimits; keys?: { spec: RequestKeySpec; cacheSalt: string | null } }
  | { type: 'load'; id: number; spec: string }
  /** Test-only: makes the thread die from an uncaught exception, the way a real crash would. */
  | { type: 'crash' };

export type FromWorker =
  /** The thread starts on this request (its tokenizer is loaded): the pool's watchdog runs from here. */
  | { id: number; started: true }
  /** Timings (ms) of a tokenization: template, encode and hash, measured on the thread. */
  | { id: number; ok: true; tokenIds: Uint32Array | null; requestKeys?: BigUint64Array | null; templateMs?: number; encodeMs?: number; hashMs?: number }
  | { id: number; ok: false; code: TokenizationErrorCode; message: string };
