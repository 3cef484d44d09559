import { startSpan, withSpan, withSpanSync } from '@kvix/telemetry';
import { SpanKind } from '@opentelemetry/api';
import { BlockKeysError, requestBlockExtras, type RequestKeyHasher } from '@kvix/block-keys';
import { prefixScores, type KvBlockIndex, type PodEntry, type PodScore, type TierWeights } from '@kvix/kv-index';
import type { MultimodalItem, PromptInput, PromptTokenizer, TokenizationTimings } from '@kvix/tokenization';
import type { Logger } from 'pino';
import type { ReuseAnalytics } from './analytics/reuse-analytics.js';
import { ScoringError } from './errors.js';
import type { ScoringMetrics } from './metrics.js';
import type { AdaptiveSpeculativeTtl } from './speculation/adaptive-ttl.js';

/** A prompt as the caller has it: token ids (no tokenization), or what vLLM would tokenize. */
export type ScorePrompt = { kind: 'tokens'; tokenIds: ArrayLike<number> } | PromptInput;

export interface PromptSpec {
  /** The served model: picks the tokenizer, and roots the keys unless `loraName` is set. */
  model: string;
  prompt: ScorePrompt;
  /** A LoRA adapter: keys are rooted at its name, as the engine's events are. */
  loraName?: string | null;
  cacheSalt?: string | null;
  /** Multimodal items of a prompt given as token ids (tokenizers report their own). */
  multimodal?: readonly MultimodalItem[] | null;
}

export interface ScoreInput extends PromptSpec {
  /** Only these pods; leave out (null/undefined) to score every pod. An empty list is an error. */
  candidates?: readonly string[] | null;
}

export interface PodScoreResult extends PodScore {
  /** False for a candidate neither discovery nor the index knows (usually a pod-identity mismatch). */
  known: boolean;
}

export type TokenizationSource = 'local' | 'render' | 'request';

/** Where a score's time went (ms): the stages a decision profile and traces name. */
export interface ScoreTimings {
  /** The tokenizer call as this thread saw it (0 for token ids); template and encode are inside it. */
  tokenizeCallMs: number;
  templateMs: number;
  encodeMs: number;
  /** Request keys from the token ids (on the tokenizer's thread when it computed them). */
  hashMs: number;
  lookupMs: number;
  /** Longest-prefix runs and tier weights from the lookup. */
  scoreMs: number;
}

export interface ScoreOutcome {
  /** Candidates (or every pod with a match), best first. */
  scores: PodScoreResult[];
  totalBlocks: number;
  promptTokens: number;
  blockSize: number;
  tokenization: TokenizationSource;
  tokenizationCached: boolean;
  /** The prompt's request keys (a routing decision can reuse them). */
  requestKeys: BigUint64Array;
  timings: ScoreTimings;
}

export interface RoutingDecision extends PromptSpec {
  pod: string;
  /** Prefill pod in prefill/decode disaggregation: it holds the prefix too. */
  prefillPod?: string | null;
  /** Lifetime of the speculative entries; default the adaptive TTL of each pod (or the index's). */
  ttlMs?: number | null;
  /** Request keys from a Score of the same prompt, to skip recomputing them. */
  requestKeys?: BigUint64Array | null;
  /**
   * What each pod held when that Score ran (its `scores`): the decision's realised reuse is read
   * from it instead of a second lookup. Pods it leaves out are looked up.
   */
  held?: readonly PodScore[] | null;
}

export interface DecisionOutcome {
  inserted: number;
  blocks: number;
  /** The decode pod's TTL (adaptive or asked for); null for the index's default. */
  ttlMs: number | null;
}

export interface PrefixScorerOptions {
  index: KvBlockIndex;
  hasher: RequestKeyHasher;
  weights: TierWeights;
  /** Null when only token ids are accepted. */
  tokenizer: PromptTokenizer | null;
  maxPromptTokens: number;
  /** Whether discovery knows a pod (candidates it does not know, and the index does not hold, are flagged). */
  isKnownPod?: (pod: string) => boolean;
  metrics?: ScoringMetrics | null;
  analytics?: ReuseAnalytics | null;
  /** Per-pod TTLs learned from confirmation latencies for decisions that name none; else the index's default. */
  speculativeTtl?: AdaptiveSpeculativeTtl | null;
  /**
   * Characters of prompt text kept to label shared prefixes in analytics; 0 (the default) keeps
   * none, since prompts may hold what operators must not see.
   */
  previewChars?: number;
  logger: Logger;
}

export interface ScoreCallOptions {
  /**
   * Ends tokenization early (ABORTED): the client went away, or its own deadline passed. The
   * tokenizer's own deadline (DEADLINE_EXCEEDED) applies either way.
   */
  signal?: AbortSignal;
}

/** The longest speculative TTL a caller may ask for: longer would outlive any plausible event delay. */
export const MAX_SPECULATIVE_TTL_MS = 10 * 60_000;
const MAX_LOGGED_UNKNOWN_PODS = 1000;

interface PreparedPrompt {
  tokens: ArrayLike<number>;
  keys: BigUint64Array;
  source: TokenizationSource;
  cached: boolean;
  timings: ScoreTimings;
}

/**
 * Precise prefix scoring: a request's prompt → the token ids the engine will hash → request keys
 * (with LoRA, cache salt and multimodal extras) → a lookup in the block index → each pod's
 * longest-prefix run, tier-weighted. Also records routing decisions as speculative entries.
 */
export class PrefixScorer {
  private readonly loggedUnknown = new Set<string>();

  constructor(private readonly options: PrefixScorerOptions) {}

  get blockSize(): number {
    return this.options.hasher.blockSize;
  }

  score(input: ScoreInput, options: ScoreCallOptions = {}): Promise<ScoreOutcome> {
    return withSpan('kvix.prefix.score', { 'kvix.model': input.model, 'kvix.prompt.kind': input.prompt.kind }, async (span) => {
      const outcome = await this.scoreUntraced(input, options);
      span.setAttributes({ 'kvix.blocks': outcome.totalBlocks, 'kvix.prompt.tokens': outcome.promptTokens, 'kvix.best.matched_blocks': outcome.scores[0]?.matchedBlocks ?? 0 });
      return outcome;
    });
  }

  private async scoreUntraced(input: ScoreInput, options: ScoreCallOptions): Promise<ScoreOutcome> {
    const candidates = this.candidatesOf(input.candidates);
    const prepared = await this.prepare(input, options.signal);
    const { index, weights } = this.options;
    const keys = prepared.keys;
    const timings = prepared.timings;
    const t0 = performance.now();
    // One walk over the keys gives every pod's run, tiers and score (no per-key entry lists).
    const match = await index.matchPrefix(keys, candidates ? { pods: candidates, weights } : { weights });
    const t1 = performance.now();
    const raw = prefixScores(match, keys.length, candidates ?? undefined);
    const scores: PodScoreResult[] = raw.map((s) => ({ ...s, known: s.matchedBlocks > 0 || this.known(s.pod) }));
    for (const s of scores) if (!s.known) this.unknownPod(s.pod, 'candidate');
    this.options.analytics?.observeScore(input.model, keys, scores[0] && scores[0].matchedBlocks > 0 ? scores[0] : undefined, () => previewOf(input.prompt, this.options.previewChars ?? 0));
    timings.lookupMs = t1 - t0;
    timings.scoreMs = performance.now() - t1;
    return {
      scores,
      totalBlocks: keys.length,
      promptTokens: prepared.tokens.length,
      blockSize: this.blockSize,
      tokenization: prepared.source,
      tokenizationCached: prepared.cached,
      requestKeys: keys,
      timings,
    };
  }

  async recordDecision(decision: RoutingDecision, options: ScoreCallOptions = {}): Promise<DecisionOutcome> {
    const pods = [decision.pod, ...(decision.prefillPod ? [decision.prefillPod] : [])];
    for (const pod of pods) if (typeof pod !== 'string' || pod.trim() === '' || /\s/.test(pod)) throw new ScoringError('INVALID_POD', `pod ${JSON.stringify(pod)} is not a pod identity (address:port)`);
    const ttl = decision.ttlMs ?? null;
    if (ttl !== null && !(Number.isInteger(ttl) && ttl > 0 && ttl <= MAX_SPECULATIVE_TTL_MS)) {
      throw new ScoringError('INVALID_REQUEST', `ttlMs must be an integer in 1..${MAX_SPECULATIVE_TTL_MS} (or unset for the index default), got ${String(ttl)}`);
    }
    const keys = decision.requestKeys ?? (await this.prepare(decision, options.signal)).keys;
    const { index, weights } = this.options;
    // What the chosen pods held before this decision: the routing's realised reuse.
    const held = decision.held ?? null;
    const known = held !== null && decision.requestKeys ? pods.map((pod) => held.find((s) => s.pod === pod)) : [];
    const before = known.length === pods.length && known.every((s) => s !== undefined) ? (known as PodScore[]) : prefixScores(await index.matchPrefix(keys, { pods, weights }), keys.length, pods);
    if (keys.length > 0) for (const pod of pods) this.options.speculativeTtl?.decided(pod, keys[keys.length - 1]!);
    const adaptive = ttl === null ? (this.options.speculativeTtl ?? null) : null;
    const ttls = pods.map((pod) => (adaptive !== null ? adaptive.ttlFor(pod) : ttl));
    if (keys.length > 0) {
      if (ttls.every((t) => t === ttls[0])) {
        const entries: PodEntry[] = pods.map((pod) => ({ pod, tier: 'gpu', speculative: true }));
        await index.add(null, keys, entries, ttls[0] === null ? {} : { ttlMs: ttls[0]! });
      } else {
        for (const [i, pod] of pods.entries()) await index.add(null, keys, [{ pod, tier: 'gpu', speculative: true }], { ttlMs: ttls[i]! });
      }
    }
    for (const [i, pod] of pods.entries()) {
      if (!this.known(pod) && (before.find((s) => s.pod === pod)?.matchedBlocks ?? 0) === 0) this.unknownPod(pod, 'decision');
      this.options.analytics?.observeDecision(decision.model, pod, i === 0 ? 'decode' : 'prefill', before.find((s) => s.pod === pod), keys.length);
    }
    return { inserted: keys.length * pods.length, blocks: keys.length, ttlMs: ttls[0] ?? null };
  }

  /** Token ids and request keys of a prompt. */
  private async prepare(spec: PromptSpec, signal: AbortSignal | undefined): Promise<PreparedPrompt> {
    if (typeof spec.model !== 'string' || spec.model === '') throw new ScoringError('INVALID_REQUEST', 'model is required');
    const max = this.options.maxPromptTokens;
    let tokens: ArrayLike<number>;
    let multimodal: readonly MultimodalItem[] | null = spec.multimodal ?? null;
    let cacheSalt = spec.cacheSalt ?? null;
    let source: TokenizationSource;
    let cached = false;
    const timings: ScoreTimings = { tokenizeCallMs: 0, templateMs: 0, encodeMs: 0, hashMs: 0, lookupMs: 0, scoreMs: 0 };
    let precomputed: BigUint64Array | null = null;
    if (spec.prompt.kind === 'tokens') {
      tokens = validTokenIds(spec.prompt.tokenIds, max);
      source = 'request';
    } else {
      const tokenizer = this.options.tokenizer;
      if (tokenizer === null) throw new ScoringError('NO_TOKENIZER', 'this service has no tokenizer configured: send token ids');
      const t0 = performance.now();
      const { hasher } = this.options;
      // The tokenizer's thread computes the keys too, incrementally per conversation, when it can.
      const keySpec = { blockSize: hasher.blockSize, seed: hasher.seed, algorithm: hasher.algorithm, root: spec.loraName || spec.model };
      const prompt = spec.prompt;
      const startedAt = Date.now();
      const result = await withSpan('kvix.tokenization', { 'kvix.model': spec.model, 'kvix.prompt.kind': prompt.kind }, async (span) => {
        const r = await tokenizer.tokenize(spec.model, prompt, { cacheSalt, requestKeys: keySpec, ...(signal ? { signal } : {}) });
        span.setAttributes({ 'kvix.tokenization.source': r.source, 'kvix.tokenization.cached': r.cached, 'kvix.prompt.tokens': r.tokenIds.length });
        traceTokenizerSteps(startedAt, r.timings);
        return r;
      });
      timings.tokenizeCallMs = performance.now() - t0;
      timings.templateMs = result.timings?.templateMs ?? 0;
      timings.encodeMs = result.timings?.encodeMs ?? 0;
      if (result.requestKeys && result.multimodal.length === 0 && (result.cacheSalt ?? null) === cacheSalt && result.requestKeys.length === hasher.blockCount(result.tokenIds.length)) {
        precomputed = result.requestKeys;
        timings.hashMs = result.timings?.hashMs ?? 0;
        traceThreadHash(startedAt, result.timings, precomputed.length, result.tokenIds.length, hasher.blockSize);
      }
      if (result.tokenIds.length > max) throw new ScoringError('PROMPT_TOO_LONG', `the prompt has ${result.tokenIds.length} tokens; the limit is ${max}`);
      tokens = result.tokenIds;
      if (result.multimodal.length > 0) multimodal = result.multimodal;
      cacheSalt = result.cacheSalt ?? cacheSalt;
      source = result.source;
      cached = result.cached;
    }
    // A placeholder past the prompt's end is a client mistake (vLLM never renders one); the render
    // client already refuses it from a server, so refuse it from a caller too.
    const beyond = multimodal?.find((m) => m.offset + m.length > tokens.length);
    if (beyond) throw new ScoringError('INVALID_REQUEST', `multimodal item ${JSON.stringify(beyond.identifier)} covers tokens ${beyond.offset}..${beyond.offset + beyond.length - 1}, beyond the prompt's ${tokens.length} tokens`);
    const { hasher } = this.options;
    if (precomputed !== null && !(multimodal && multimodal.length > 0)) return { tokens, keys: precomputed, source, cached, timings };
    let extras;
    try {
      extras = requestBlockExtras({ tokenCount: tokens.length, blockSize: hasher.blockSize, multimodal, cacheSalt });
    } catch (err) {
      if (err instanceof BlockKeysError) throw new ScoringError('INVALID_REQUEST', err.message);
      throw err;
    }
    const t0 = performance.now();
    const keys = withSpanSync('kvix.hash', { 'kvix.tokens': tokens.length, 'kvix.block_size': hasher.blockSize }, (span) => {
      const k = hasher.keys(tokens, spec.loraName || spec.model, { extras });
      span.setAttribute('kvix.blocks', k.length);
      return k;
    });
    timings.hashMs = performance.now() - t0;
    return { tokens, keys, source, cached, timings };
  }

  private candidatesOf(candidates: readonly string[] | null | undefined): string[] | null {
    if (candidates === null || candidates === undefined) return null;
    if (candidates.length === 0) throw new ScoringError('EMPTY_CANDIDATES', 'candidates is empty; leave it out to score every pod');
    const unique = [...new Set(candidates)];
    for (const pod of unique) if (typeof pod !== 'string' || pod === '') throw new ScoringError('INVALID_REQUEST', 'candidate pods must be non-empty strings');
    return unique;
  }

  private known(pod: string): boolean {
    return this.options.isKnownPod?.(pod) ?? true;
  }

  private unknownPod(pod: string, where: 'candidate' | 'decision'): void {
    this.options.metrics?.unknownCandidates.inc();
    if (this.loggedUnknown.has(pod) || this.loggedUnknown.size >= MAX_LOGGED_UNKNOWN_PODS) return;
    this.loggedUnknown.add(pod);
    this.options.logger.warn({ pod, where }, 'a pod the index has never heard of: check that routers name pods by their serving address:port, as discovery does');
  }
}

function validTokenIds(ids: ArrayLike<number>, max: number): ArrayLike<number> {
  if (ids.length > max) throw new ScoringError('PROMPT_TOO_LONG', `the prompt has ${ids.length} tokens; the limit is ${max}`);
  if (ids instanceof Uint32Array) return ids;
  for (let i = 0; i < ids.length; i++) {
    const t = ids[i]!;
    if (!(Number.isInteger(t) && t >= 0 && t <= 0xffffffff)) throw new ScoringError('INVALID_REQUEST', `token id at position ${i} is not an unsigned 32-bit integer: ${String(t)}`);
  }
  return ids;
}

/** The start of a prompt given as text, to label shared prefixes in analytics. */
function previewOf(prompt: ScorePrompt, chars: number): string | null {
  if (chars <= 0) return null;
  const clip = (s: string): string => (s.length > chars ? `${s.slice(0, chars)}…` : s);
  if (prompt.kind === 'completion') return clip(prompt.prompt);
  if (prompt.kind === 'chat') {
    const first = prompt.messages[0];
    if (!first) return null;
    const content = typeof first.content === 'string' ? first.content : Array.isArray(first.content) ? first.content.map((p) => p.text ?? '').join('\n') : '';
    return clip(`${first.role}: ${content}`);
  }
  return null;
}

/**
 * The template and tokenize steps of a local tokenization as child spans. They ran on a tokenizer
 * thread (or inline), which reports how long each took; the spans are placed at the end of the
 * call (queueing for a thread came first), with their measured lengths, and the keys the thread
 * hashed after encoding are left out of the tokenize span (traceThreadHash shows them).
 */
function traceTokenizerSteps(startedMs: number, t: TokenizationTimings | undefined): void {
  if (!t) return;
  const end = startedMs + t.totalMs - (t.hashMs ?? 0);
  const tokenizeStart = t.encodeMs !== undefined ? end - t.encodeMs : startedMs + (t.templateMs ?? 0);
  if (t.templateMs !== undefined) startSpan('kvix.template', {}, SpanKind.INTERNAL, undefined, tokenizeStart - t.templateMs).end(tokenizeStart);
  startSpan('kvix.tokenize', {}, SpanKind.INTERNAL, undefined, tokenizeStart).end(end);
}

/** Request keys the tokenizer's thread computed: a kvix.hash span under the score, as when hashed here. */
function traceThreadHash(startedMs: number, t: TokenizationTimings | undefined, blocks: number, tokens: number, blockSize: number): void {
  if (!t) return;
  const end = startedMs + t.totalMs;
  startSpan('kvix.hash', { 'kvix.tokens': tokens, 'kvix.block_size': blockSize, 'kvix.blocks': blocks, 'kvix.hash.on_tokenizer_thread': true }, SpanKind.INTERNAL, undefined, end - (t.hashMs ?? 0)).end(end);
}
