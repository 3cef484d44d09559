import { CachingTokenizer, type ResultCacheStats } from '../cache/caching-tokenizer.js';
import { hasRequestChatTemplate } from '../chat.js';
import { TokenizationError, type TokenizationErrorCode } from '../errors.js';
import type { LocalTokenizerPoolHealth } from '../pool/local-tokenizer-pool.js';
import { checkPromptInput, promptTextLength } from '../prompt-input.js';
import type { PromptInput, PromptTokenizer, TokenizedPrompt, TokenizeOptions, TokenizerSource } from '../prompt-tokenizer.js';
import { ModelRouter } from './model-router.js';
import { parseTokenizationConfig, type TokenizationConfig, type TokenizationConfigInput } from './tokenization-config.js';

/** Hooks for metrics, so this package needs no metrics library. Exceptions they throw are ignored. */
export interface TokenizationObserver {
  tokenized?(event: { model: string; source: TokenizerSource; seconds: number; cached: boolean; tokens: number }): void;
  /** `source` is 'none' when no tokenizer is configured for the model or the request was refused before routing. */
  failed?(event: { model: string; source: TokenizerSource | 'none'; code: TokenizationErrorCode }): void;
}

export interface ModelTokenizersOptions {
  observer?: TokenizationObserver;
}

/** vLLM's words when a request brings a chat template and the server does not trust them. */
export const UNTRUSTED_TEMPLATE_MESSAGE =
  'Chat template is passed with request, but --trust-request-chat-template is not set. Refused request with untrusted chat template.';

/**
 * The tokenizer a service uses: one per model (the local pool or a vLLM server's render
 * endpoints, from a validated configuration), an exact result cache in front, a prompt length
 * limit, and metrics hooks.
 */
export class ModelTokenizers implements PromptTokenizer {
  readonly config: TokenizationConfig;
  private readonly router: ModelRouter;
  private readonly front: PromptTokenizer;
  private readonly cache: CachingTokenizer | null;
  private readonly observer: TokenizationObserver;

  /** Throws INVALID_CONFIG naming the offending keys. */
  constructor(config: TokenizationConfigInput = {}, options: ModelTokenizersOptions = {}) {
    this.config = parseTokenizationConfig(config);
    this.router = new ModelRouter(this.config);
    this.cache = this.config.cacheBytes > 0 ? new CachingTokenizer(this.router, { maxBytes: this.config.cacheBytes, admission: this.config.cacheAdmission }) : null;
    this.front = this.cache ?? this.router;
    this.observer = options.observer ?? {};
  }

  async tokenize(model: string, input: PromptInput, options?: TokenizeOptions): Promise<TokenizedPrompt> {
    const start = performance.now();
    let source: TokenizerSource | 'none' = 'none';
    try {
      if (typeof model !== 'string' || model === '') throw new TokenizationError('INVALID_REQUEST', 'the model name must be a non-empty string');
      checkPromptInput(input);
      if (!this.config.trustRequestChatTemplate && input.kind === 'chat' && hasRequestChatTemplate(input.options)) {
        throw new TokenizationError('INVALID_REQUEST', UNTRUSTED_TEMPLATE_MESSAGE);
      }
      source = this.router.routeFor(model)?.source ?? 'none';
      const limit = this.config.maxPromptTokens;
      const chars = promptTextLength(input);
      if (chars > this.config.maxCharsPerToken * limit) {
        throw new TokenizationError('PROMPT_TOO_LONG', `the prompt has ${chars} characters, more than ${limit} tokens can hold; at most ${limit} tokens are allowed`);
      }
      const result = await this.withDeadline(options, (bounded) => this.front.tokenize(model, input, bounded));
      if (result.tokenIds.length > limit) {
        throw new TokenizationError('PROMPT_TOO_LONG', `the prompt has ${result.tokenIds.length} tokens; at most ${limit} are allowed`);
      }
      this.notify(() =>
        this.observer.tokenized?.({ model, source: result.source, seconds: (performance.now() - start) / 1000, cached: result.cached, tokens: result.tokenIds.length }),
      );
      return result;
    } catch (err) {
      const code: TokenizationErrorCode = err instanceof TokenizationError ? err.code : 'INTERNAL';
      this.notify(() => this.observer.failed?.({ model, source, code }));
      throw err;
    }
  }

  /**
   * Loads the local tokenizers of `models` (default: every configured local model) on every
   * thread; call before reporting ready. Models served by render endpoints need nothing; a model
   * with no tokenizer at all fails with UNKNOWN_MODEL.
   */
  /**
   * Loads the configured tokenizers and those of `models` (the models the pods serve) before a
   * service reports ready — a tokenizer loading on a first request makes it miss its deadline.
   * A model without a tokenizer is reported to `onMissing`, not thrown.
   */
  async warmUpServed(models: readonly string[], onMissing: (model: string, err: Error) => void): Promise<void> {
    await this.warmUp();
    for (const model of new Set(models)) {
      await this.warmUp([model]).catch((err: unknown) => onMissing(model, err as Error));
    }
  }

  async warmUp(models?: readonly string[]): Promise<void> {
    const pool = this.router.pool;
    const lanes = { requestTemplates: this.config.trustRequestChatTemplate };
    if (models === undefined) {
      await pool?.warmUp(undefined, lanes);
      return;
    }
    const local = models.filter((m) => this.router.route(m).source === 'local');
    if (local.length > 0) await pool!.warmUp(local, lanes);
  }

  /**
   * Whether local tokenization can answer (null: this service tokenizes nothing locally). A pool
   * whose threads keep dying is not, and the service's probes say so.
   */
  health(): LocalTokenizerPoolHealth | null {
    return this.router.pool?.health() ?? null;
  }

  /** The result cache's counters, or null when it is disabled (`cacheBytes: 0`). */
  cacheStats(): ResultCacheStats | null {
    return this.cache?.stats() ?? null;
  }

  async close(): Promise<void> {
    await this.front.close();
  }

  /**
   * Runs `work` under timeoutMs: its signal fires at the deadline and the deadline travels with it
   * (so a thread stops the work too); the caller's own signal still ends it sooner (ABORTED).
   */
  private async withDeadline<T>(options: TokenizeOptions | undefined, work: (options: TokenizeOptions) => Promise<T>): Promise<T> {
    const timeoutMs = this.config.timeoutMs;
    const deadline = Math.min(Date.now() + timeoutMs, options?.deadline ?? Infinity);
    const expiry = new AbortController();
    const timer = setTimeout(() => expiry.abort(), Math.max(0, deadline - Date.now()));
    // The caller's signal aborts the same controller (AbortSignal.any cost ~5 µs a call, and
    // tracks its sources for the garbage collector).
    const outer = options?.signal;
    const forward = (): void => expiry.abort(outer?.reason);
    if (outer !== undefined) {
      if (outer.aborted) forward();
      else outer.addEventListener('abort', forward, { once: true });
    }
    try {
      return await work({ ...options, signal: expiry.signal, deadline });
    } catch (err) {
      if (expiry.signal.aborted && !(outer?.aborted ?? false) && err instanceof TokenizationError && err.code === 'ABORTED') {
        throw new TokenizationError('DEADLINE_EXCEEDED', `tokenization did not finish within ${timeoutMs} ms`);
      }
      throw err;
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener('abort', forward);
    }
  }

  private notify(call: () => void): void {
    try {
      call();
    } catch {
      // A broken metrics hook must not fail the request it measures.
    }
  }
}
