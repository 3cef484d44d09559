/** The one question every tokenizer here answers: which token ids will vLLM hash for this request? */
import type { ChatMessage, ChatTemplateOptions } from './types.js';

export type PromptInput =
  | { kind: 'completion'; prompt: string; addSpecialTokens?: boolean }
  | {
      kind: 'chat';
      messages: ChatMessage[];
      options?: ChatTemplateOptions;
      /**
       * The UTF-8 JSON request body `messages` and `options` were read from with
       * chatPromptFromBody. A tokenizer thread is then sent these bytes and reads them itself (a
       * copy of bytes instead of a structured clone of every message), and the result cache keys
       * on them. Leave it out when the messages came from anywhere else.
       */
      body?: Uint8Array;
    };

/** A multimodal item's place in the prompt (the shape of @kvix/block-keys' MultimodalPlaceholder). */
export interface MultimodalItem {
  /** The engine's hash of the item (vLLM's `mm_hashes`), which goes into the block keys it covers. */
  identifier: string;
  offset: number;
  length: number;
}

export type TokenizerSource = 'local' | 'render';

/**
 * The request keys a caller wants computed with the ids (on the tokenizer's thread, incrementally
 * per conversation): its hasher's settings and the chain's root (the model, or the LoRA adapter).
 */
export interface RequestKeySpec {
  blockSize: number;
  seed: string;
  algorithm: 'cbor-fnv' | 'xxh64';
  root: string;
}

/** Where a tokenization's time went (ms), for decision profiles and traces. */
export interface TokenizationTimings {
  /** The whole call as its caller saw it (thread hop and queueing included). */
  totalMs: number;
  /** Rendering the chat template (chat prompts tokenized locally). */
  templateMs?: number;
  /** Turning the prompt text into ids (tokenized locally). */
  encodeMs?: number;
  /** Computing the request keys asked for. */
  hashMs?: number;
}

export interface TokenizedPrompt {
  tokenIds: Uint32Array;
  /** Sorted by offset; empty for text-only prompts. */
  multimodal: MultimodalItem[];
  /** The salt the engine will use: what the render endpoint echoed, else the request's. */
  cacheSalt: string | null;
  source: TokenizerSource;
  /** Answered from the exact result cache rather than tokenized for this call. */
  cached: boolean;
  timings?: TokenizationTimings;
  /**
   * The request keys of `tokenIds`, when `requestKeys` was asked for and the tokenizer computed
   * them (local tokenization; a render endpoint leaves them to the caller).
   */
  requestKeys?: BigUint64Array;
}

export interface TokenizeOptions {
  /** The request's `cache_salt`. */
  cacheSalt?: string | null;
  /** Compute the prompt's request keys too (see TokenizedPrompt.requestKeys). */
  requestKeys?: RequestKeySpec | null;
  signal?: AbortSignal;
  /**
   * Epoch milliseconds after which the answer is of no use: a chat template stops rendering there,
   * and a tokenizer thread still busy with the request past it is replaced. The caller's own wait
   * is bounded by `signal` (ModelTokenizers sets both from its timeoutMs).
   */
  deadline?: number;
}

export interface PromptTokenizer {
  tokenize(model: string, input: PromptInput, options?: TokenizeOptions): Promise<TokenizedPrompt>;
  /** Releases threads and connections; later calls fail with code CLOSED. */
  close(): Promise<void>;
}
