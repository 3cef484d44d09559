import { RequestKeyHasher } from '@kvix/block-keys';
import { TokenizationError } from '../errors.js';
import type { LocalTokenizer } from '../local-tokenizer.js';
import { promptTextLength } from '../prompt-input.js';
import { PrefixKeyCache, type PieceTrace } from '../prefix-keys.js';
import type { PromptInput, RequestKeySpec } from '../prompt-tokenizer.js';

/** Where a local tokenization's time went (ms); filled by tokenizeLocally when given. */
export interface LocalTimings {
  templateMs: number;
  encodeMs: number;
  hashMs: number;
}

/** What computes request keys beside the ids: hashers by spec, and the incremental cache. */
export class LocalKeyer {
  private readonly hashers = new Map<string, RequestKeyHasher>();
  readonly cache: PrefixKeyCache;

  /** `maxTokens`: tokens of remembered prompts kept (default 4 M per thread, ~20 MB). */
  constructor(maxTokens?: number) {
    this.cache = new PrefixKeyCache(maxTokens);
  }

  keys(spec: RequestKeySpec, cacheSalt: string | null, ids: Uint32Array, trace: PieceTrace): BigUint64Array<ArrayBuffer> {
    const id = `${spec.algorithm}\u0000${spec.blockSize}\u0000${spec.seed}`;
    let hasher = this.hashers.get(id);
    if (hasher === undefined) {
      hasher = new RequestKeyHasher({ blockSize: spec.blockSize, seed: spec.seed, algorithm: spec.algorithm });
      if (this.hashers.size >= 16) this.hashers.clear();
      this.hashers.set(id, hasher);
    }
    return this.cache.keys(hasher, spec.root, cacheSalt, ids, trace) as BigUint64Array<ArrayBuffer>;
  }
}

/** What bounds one local tokenization (sent to a tokenizer thread with each request). */
export interface PromptLimits {
  /** Epoch milliseconds after which the answer is of no use: rendering stops there. */
  deadline: number | null;
  /** Tokens a prompt may have; with the model's own context length it bounds the text before any work. */
  maxPromptTokens: number | null;
  /** Characters per allowed token accepted before tokenizing (and rendered by a chat template). */
  maxCharsPerToken: number;
}

export const NO_LIMITS: PromptLimits = { deadline: null, maxPromptTokens: null, maxCharsPerToken: Infinity };

export interface LocalResult {
  ids: Uint32Array<ArrayBuffer>;
  /** When asked for (`keys`). */
  requestKeys: BigUint64Array<ArrayBuffer> | null;
}

/**
 * The ids vLLM computes for the input, with the two checks vLLM's completions path makes that
 * LocalTokenizer itself does not (it is also used for plain text, where both are fine), and the
 * bounds that keep one request from holding a thread: text longer than the allowed tokens can
 * hold is refused before it is encoded, and a chat template stops at the deadline or once it has
 * rendered that much text.
 */
export function tokenizeLocally(
  tokenizer: LocalTokenizer,
  input: PromptInput,
  timings?: LocalTimings,
  keys?: { spec: RequestKeySpec; cacheSalt: string | null; keyer: LocalKeyer },
  limits: PromptLimits = NO_LIMITS,
): LocalResult {
  const tokens = Math.min(limits.maxPromptTokens ?? Infinity, tokenizer.maxModelLen);
  const maxChars = tokens * limits.maxCharsPerToken;
  const chars = promptTextLength(input);
  if (chars > maxChars) {
    throw new TokenizationError('PROMPT_TOO_LONG', `the prompt has ${chars} characters, more than ${tokens} tokens can hold (${limits.maxCharsPerToken} characters per token are allowed)`);
  }
  let ids: Uint32Array<ArrayBuffer>;
  const trace: PieceTrace | undefined = keys ? { fingerprints: [], ends: [] } : undefined;
  const t0 = performance.now();
  let rendered = t0;
  if (input.kind === 'completion') {
    if (input.prompt === '') throw new TokenizationError('INVALID_REQUEST', 'Either prompt or prompt_embeds must be provided and non-empty.');
    ids = tokenizer.encodeIds(input.prompt, { addSpecialTokens: input.addSpecialTokens ?? true }, trace);
  } else {
    // encodeChat in two steps (the same calls), so a profile can tell templating from tokenizing.
    const prompt = tokenizer.renderChat(input.messages, input.options, { ...(limits.deadline !== null ? { deadline: limits.deadline } : {}), maxChars });
    rendered = performance.now();
    ids = tokenizer.encodeIds(prompt, { addSpecialTokens: input.options?.addSpecialTokens ?? false }, trace);
  }
  if (ids.length === 0) throw new TokenizationError('INVALID_REQUEST', 'No token_ids rendered');
  const encoded = performance.now();
  const requestKeys = keys ? keys.keyer.keys(keys.spec, keys.cacheSalt, ids, trace!) : null;
  if (timings) {
    timings.templateMs = rendered - t0;
    timings.encodeMs = encoded - rendered;
    timings.hashMs = keys ? performance.now() - encoded : 0;
  }
  return { ids, requestKeys };
}
