import { raceAbort, throwIfAborted } from '../abort.js';
import { TokenizationError } from '../errors.js';
import { fnv32 } from '../fnv.js';
import type { PromptInput, PromptTokenizer, RequestKeySpec, TokenizedPrompt, TokenizeOptions } from '../prompt-tokenizer.js';
import { ByteBudgetLru } from './byte-budget-lru.js';
import { cacheKey, sameBody } from './cache-key.js';

export interface CachingTokenizerOptions {
  /** Budget for keys and ids (key characters + 4 bytes per token). Default 64 MiB. */
  maxBytes?: number;
  /**
   * Which answers are kept: `always`, or `on-repeat` — only an answer to a request seen before
   * (recently), so one-of-a-kind requests (most chat turns) are not stored. Default `always`.
   */
  admission?: CacheAdmission;
}

export type CacheAdmission = 'always' | 'on-repeat';

/** Requests remembered (as a hash of their key) for `on-repeat` admission. */
const SEEN_CAPACITY = 65_536;

/**
 * The keys seen lately, as 32-bit hashes in a ring: a request whose hash is here was seen before
 * (or collides with one that was: then a one-of-a-kind answer is stored, which costs only memory).
 */
class SeenKeys {
  private readonly ring = new Int32Array(SEEN_CAPACITY);
  private readonly members = new Map<number, number>();
  private next = 0;
  private filled = 0;

  /** Whether `key` was seen; remembers it either way. */
  check(key: string): boolean {
    // Signed, as the ring holds it.
    const h = fnv32(key) | 0;
    const seen = this.members.has(h);
    if (this.filled === SEEN_CAPACITY) {
      const old = this.ring[this.next]!;
      const count = this.members.get(old)!;
      if (count === 1) this.members.delete(old);
      else this.members.set(old, count - 1);
    } else {
      this.filled++;
    }
    this.ring[this.next] = h;
    this.members.set(h, (this.members.get(h) ?? 0) + 1);
    this.next = (this.next + 1) % SEEN_CAPACITY;
    return seen;
  }
}

export interface ResultCacheStats {
  /** Calls answered without a call of their own to the wrapped tokenizer (cached or shared). */
  hits: number;
  /** Calls that went to the wrapped tokenizer. */
  misses: number;
  entries: number;
  bytes: number;
}

/** One underlying call and the callers waiting for it. */
interface SharedCall {
  readonly result: Promise<TokenizedPrompt>;
  readonly controller: AbortController;
  /** A copy of the request body it tokenizes, when its key holds only a digest of it. */
  readonly body: Uint8Array | null;
  waiters: number;
}

interface CachedResult {
  result: TokenizedPrompt;
  /** A copy of the body the key digests: a hit must have these bytes. */
  body: Uint8Array | null;
}

function sizeOf(key: string, cached: CachedResult): number {
  const result = cached.result;
  let bytes = key.length + (cached.body?.byteLength ?? 0) + 4 * result.tokenIds.length + 8 * (result.requestKeys?.length ?? 0);
  for (const item of result.multimodal) bytes += item.identifier.length + 8;
  return bytes;
}

/** The caller owns what it is given; the cache's copy must stay as the tokenizer produced it. */
function copyOf(result: TokenizedPrompt, cached: boolean): TokenizedPrompt {
  return {
    tokenIds: result.tokenIds.slice(),
    multimodal: result.multimodal.map((m) => ({ ...m })),
    cacheSalt: result.cacheSalt,
    source: result.source,
    cached,
    // Only the call that tokenized reports where its time went.
    ...(result.timings && !cached ? { timings: result.timings } : {}),
    ...(result.requestKeys ? { requestKeys: result.requestKeys.slice() } : {}),
  };
}

/**
 * An exact result cache in front of any PromptTokenizer: a hit is always what a fresh call would
 * return, because the key is the whole request (model, salt, every option), stored and compared
 * in full — a chat body as its bytes, kept beside a digest that finds them. Concurrent identical
 * misses share one call.
 */
export class CachingTokenizer implements PromptTokenizer {
  private readonly lru: ByteBudgetLru<CachedResult>;
  private readonly inFlight = new Map<string, SharedCall>();
  private hits = 0;
  private misses = 0;
  private closed = false;
  /** With `on-repeat` admission, the requests seen lately. */
  private readonly seen: SeenKeys | null;

  constructor(
    private readonly inner: PromptTokenizer,
    options: CachingTokenizerOptions = {},
  ) {
    const maxBytes = options.maxBytes ?? 64 * 2 ** 20;
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) {
      throw new TokenizationError('INVALID_CONFIG', `maxBytes must be an integer ≥ 0, not ${String(maxBytes)}`);
    }
    this.lru = new ByteBudgetLru(maxBytes);
    const admission = options.admission ?? 'always';
    if (admission !== 'always' && admission !== 'on-repeat') throw new TokenizationError('INVALID_CONFIG', `admission must be 'always' or 'on-repeat', not ${String(admission)}`);
    this.seen = admission === 'on-repeat' ? new SeenKeys() : null;
  }

  async tokenize(model: string, input: PromptInput, options: TokenizeOptions = {}): Promise<TokenizedPrompt> {
    if (this.closed) throw new TokenizationError('CLOSED', 'the caching tokenizer is closed');
    throwIfAborted(options.signal);
    const salt = options.cacheSalt ?? null;
    const keySpec = options.requestKeys ?? null;
    const base = cacheKey(model, input, salt);
    if (base === null) {
      this.misses++;
      return this.inner.tokenize(model, input, options);
    }
    // Answers with request keys are kept apart from answers without, and by the keys' settings.
    const key = keySpec === null ? base.key : `${base.key}|K${keySpec.algorithm}|${keySpec.blockSize}|${JSON.stringify(keySpec.seed)}|${JSON.stringify(keySpec.root)}`;
    const hit = this.lru.get(key);
    // A digest that matches other bytes (a collision, however unlikely) is a miss whose answer replaces the entry.
    if (hit !== undefined && sameBody(hit.body, base.body)) {
      this.hits++;
      return copyOf(hit.result, true);
    }
    let shared = this.inFlight.get(key);
    if (shared !== undefined && !sameBody(shared.body, base.body)) shared = undefined;
    const joined = shared !== undefined;
    if (shared === undefined) {
      shared = this.startCall(key, base.body, model, input, salt, keySpec, options.deadline);
      this.misses++;
    } else {
      this.hits++;
    }
    shared.waiters++;
    const call = shared;
    try {
      return copyOf(await raceAbort(call.result, options.signal), joined);
    } catch (err) {
      if (err instanceof TokenizationError && err.code === 'ABORTED' && options.signal?.aborted) this.leave(key, call);
      throw err;
    }
  }

  stats(): ResultCacheStats {
    return { hits: this.hits, misses: this.misses, entries: this.lru.size, bytes: this.lru.bytes };
  }

  clear(): void {
    this.lru.clear();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.lru.clear();
    await this.inner.close();
  }

  private startCall(key: string, body: Uint8Array | null, model: string, input: PromptInput, cacheSalt: string | null, requestKeys: RequestKeySpec | null, deadline: number | undefined): SharedCall {
    const controller = new AbortController();
    let result: Promise<TokenizedPrompt>;
    try {
      // The first caller's deadline bounds the shared work; later waiters may see it end sooner.
      result = this.inner.tokenize(model, input, { cacheSalt, signal: controller.signal, ...(requestKeys ? { requestKeys } : {}), ...(deadline !== undefined ? { deadline } : {}) });
    } catch (err) {
      result = Promise.reject(err);
    }
    // A one-of-a-kind request's answer is not kept (`on-repeat`): storing every chat turn made the
    // cache churn the heap (in a 60-s routing run, GC 8.2% of the event loop's busy time against
    // 2.6% without the cache, and 20% more CPU in all).
    const admitted = this.seen === null || this.seen.check(key);
    // The call keeps its own copy of the body: the request's buffer belongs to the request. A call
    // whose answer is not kept needs one too, while other callers may join it.
    const bytes = body === null ? null : Uint8Array.prototype.slice.call(body);
    const shared: SharedCall = { result, controller, body: bytes, waiters: 0 };
    this.inFlight.set(key, shared);
    result.then(
      (value) => {
        if (this.inFlight.get(key) === shared) this.inFlight.delete(key);
        if (!this.closed && !controller.signal.aborted && admitted) {
          const cached: CachedResult = { result: value, body: bytes };
          this.lru.set(key, cached, sizeOf(key, cached));
        }
      },
      () => {
        if (this.inFlight.get(key) === shared) this.inFlight.delete(key);
      },
    );
    return shared;
  }

  /** The last waiter to give up stops the call, and no later caller may join the stopped call. */
  private leave(key: string, shared: SharedCall): void {
    shared.waiters--;
    if (shared.waiters > 0) return;
    if (this.inFlight.get(key) === shared) this.inFlight.delete(key);
    shared.controller.abort(new TokenizationError('ABORTED', 'every caller waiting for this tokenization gave up'));
  }
}
