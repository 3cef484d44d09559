import { RequestKeyHasher } from '@kvix/block-keys';
import { TokenizationError } from '../errors.js';
import type { LocalTokenizer } from '../local-tokenizer.js';
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

export interface LocalResult {
  ids: Uint32Array<ArrayBuffer>;
  /** When asked for (`keys`). */
  requestKeys: BigUint64Array<ArrayBuffer> | null;
}

/**
 * The ids vLLM computes for the input, with the two checks vLLM's completions path makes that
 * LocalTokenizer itself does not (it is also used for plain text, where both are fine).
 */
export function tokenizeLocally(
  tokenizer: LocalTokenizer,
  input: PromptInput,
  timings?: LocalTimings,
  keys?: { spec: RequestKeySpec; cacheSalt: string | null; keyer: LocalKeyer },
): LocalResult {
  let ids: Uint32Array<ArrayBuffer>;
  const trace: PieceTrace | undefined = keys ? { fingerprints: [], ends: [] } : undefined;
  const t0 = performance.now();
  let rendered = t0;
  if (input.kind === 'completion') {
    if (input.prompt === '') throw new TokenizationError('INVALID_REQUEST', 'Either prompt or prompt_embeds must be provided and non-empty.');
    ids = tokenizer.encodeIds(input.prompt, { addSpecialTokens: input.addSpecialTokens ?? true }, trace);
  } else {
    // encodeChat in two steps (the same calls), so a profile can tell templating from tokenizing.
    const prompt = tokenizer.renderChat(input.messages, input.options);
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
