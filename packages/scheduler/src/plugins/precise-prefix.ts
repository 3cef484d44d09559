import { status as GrpcStatus } from '@grpc/grpc-js';
import type { PrefixScorer, ScoreInput, ScoreOutcome, ScoreTimings } from '@kvix/scoring';
import type { Logger } from 'pino';
import type { Candidate, PreRequestHook, Producer, SchedulingRequest, SchedulingResult, Scorer, Scores } from '../types.js';
import { PREFIX_MATCH, type PrefixMatch } from './prefix-match.js';

export interface PrefixScoresResult {
  /** Per pod: normalised tier-weighted score and matched blocks. */
  scores: { pod: string; normalized: number; matchedBlocks: number }[];
  totalBlocks: number;
  /** Request keys, when the backend can hand them back for the routing decision. */
  requestKeys: BigUint64Array | null;
  /** The prompt's length in tokens, when the backend reports it. */
  promptTokens?: number | null;
  /** Where the backend's time went, when it ran in this process. */
  timings?: ScoreTimings;
  /** Every scored pod's full score, when the backend ran in this process (a decision reuses it). */
  held?: ScoreOutcome['scores'];
}

/** Where precise prefix scores come from: the embedded index, or a remote kvix indexer. */
export interface PrefixBackend {
  readonly kind: 'embedded' | 'remote';
  score(input: ScoreInput): Promise<PrefixScoresResult>;
  /** `held`: the `held` of the score that produced `requestKeys`, when there was one. */
  recordDecision(input: ScoreInput, pod: string, requestKeys: BigUint64Array | null, ttlMs: number | null, held?: ScoreOutcome['scores'] | null): Promise<void>;
  close(): Promise<void>;
}

export class EmbeddedPrefixBackend implements PrefixBackend {
  readonly kind = 'embedded';
  constructor(private readonly scorer: PrefixScorer) {}

  async score(input: ScoreInput): Promise<PrefixScoresResult> {
    const out = await this.scorer.score(input);
    return { scores: out.scores, totalBlocks: out.totalBlocks, requestKeys: out.requestKeys, promptTokens: out.promptTokens, timings: out.timings, held: out.scores };
  }

  async recordDecision(input: ScoreInput, pod: string, requestKeys: BigUint64Array | null, ttlMs: number | null, held?: ScoreOutcome['scores'] | null): Promise<void> {
    await this.scorer.recordDecision({ ...input, pod, requestKeys, ttlMs, held: held ?? null });
  }

  async close(): Promise<void> {}
}

const KEYS = 'precise-prefix-keys';
const FAILED = 'precise-prefix-failed';
const HELD = 'precise-prefix-held';
const MAX_LOGGED = 100;

/**
 * The precise prefix scorer: each candidate's normalised, tier-weighted longest prefix of the
 * request from the block index (kvix's own, embedded or remote). On every decision it records
 * speculative entries for the chosen endpoint, so the next request with the same prefix sees it
 * before the engine's events arrive. A failing backend never fails the request: the scores are
 * 0 and the other scorers decide.
 *
 * It also runs as a producer, before admission and filters, so the latency predictor can use each
 * pod's prefix match; the scorer stage then reuses that lookup rather than repeating it.
 */
export class PrecisePrefixCacheScorer implements Scorer, PreRequestHook, Producer {
  readonly kind = 'scorer';
  readonly type = 'precise-prefix-cache-scorer';
  readonly producerStage = 0;
  private readonly logged = new Set<string>();
  private readonly memoKey: string;

  constructor(
    readonly name: string,
    private readonly backend: PrefixBackend,
    private readonly options: { speculative: boolean; speculativeTtlMs: number | null; logger: Logger; onError?: (code: string) => void },
  ) {
    this.memoKey = `precise-prefix-scores:${name}`;
  }

  async produce(request: SchedulingRequest, candidates: readonly Candidate[]): Promise<void> {
    request.cycle.set(this.memoKey, await this.lookup(request, candidates));
  }

  async score(request: SchedulingRequest, candidates: readonly Candidate[]): Promise<Scores> {
    const produced = request.cycle.get(this.memoKey) as Scores | undefined;
    if (produced === undefined) return this.lookup(request, candidates);
    return new Map(candidates.map((c) => [c.endpoint.id, produced.get(c.endpoint.id) ?? 0]));
  }

  private async lookup(request: SchedulingRequest, candidates: readonly Candidate[]): Promise<Scores> {
    const out: Scores = new Map(candidates.map((c) => [c.endpoint.id, 0]));
    const matched = new Map<string, number>();
    const match: PrefixMatch = { cold: true, totalBlocks: 0, bestMatchedBlocks: 0, matchedBlocks: matched, promptTokens: null };
    request.cycle.set(PREFIX_MATCH, match);
    if (request.prompt === null || candidates.length === 0) return out;
    try {
      const result = await this.backend.score({ ...request.prompt, candidates: candidates.map((c) => c.endpoint.id) });
      const t = result.timings;
      if (t && request.timings) {
        const d = request.timings;
        d.tokenizerCall += t.tokenizeCallMs;
        d.template += t.templateMs;
        d.encode += t.encodeMs;
        d.hash += t.hashMs;
        d.lookup += t.lookupMs;
        d.prefixScore += t.scoreMs;
      }
      match.totalBlocks = result.totalBlocks;
      match.promptTokens = result.promptTokens ?? null;
      for (const s of result.scores) {
        if (!out.has(s.pod)) continue;
        out.set(s.pod, s.normalized);
        matched.set(s.pod, s.matchedBlocks);
        if (s.matchedBlocks > match.bestMatchedBlocks) match.bestMatchedBlocks = s.matchedBlocks;
      }
      match.cold = match.bestMatchedBlocks === 0;
      request.cycle.set(KEYS, result.requestKeys);
      if (result.held) request.cycle.set(HELD, result.held);
    } catch (err) {
      request.cycle.set(FAILED, true);
      this.failed(err, request.model);
    }
    return out;
  }

  async preRequest(request: SchedulingRequest, result: SchedulingResult): Promise<void> {
    const chosen = result.endpoints[0];
    if (!this.options.speculative || request.prompt === null || chosen === undefined) return;
    // The embedded index could not score the prompt (its tokenization failed or ran out of time):
    // recording the decision would tokenize it all over again, on the request's path. (A remote
    // indexer's failure may be the call, not the prompt: its decision is still sent.)
    if (request.cycle.get(FAILED) === true && this.backend.kind === 'embedded') return;
    const keys = (request.cycle.get(KEYS) as BigUint64Array | null | undefined) ?? null;
    const held = (request.cycle.get(HELD) as ScoreOutcome['scores'] | undefined) ?? null;
    try {
      await this.backend.recordDecision(request.prompt, chosen.id, keys, this.options.speculativeTtlMs, held);
    } catch (err) {
      this.failed(err, request.model);
    }
  }

  close(): Promise<void> {
    return this.backend.close();
  }

  private failed(err: unknown, model: string): void {
    const code = (err as { code?: unknown }).code;
    // Library errors carry a string code; gRPC errors (remote indexer) a numeric status.
    const label = typeof code === 'string' ? code : typeof code === 'number' ? (GrpcStatus[code] ?? 'ERROR') : 'ERROR';
    this.options.onError?.(label);
    const key = `${model}:${label}`;
    if (this.logged.has(key) || this.logged.size >= MAX_LOGGED) return;
    this.logged.add(key);
    this.options.logger.warn({ model, code: label, err: (err as Error).message }, 'precise prefix scores unavailable for this request; routing on the other scorers');
  }
}
