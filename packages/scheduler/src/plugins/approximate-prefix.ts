import { createHash } from 'node:crypto';
import type { Candidate, PreRequestHook, SchedulingRequest, SchedulingResult, Scorer, Scores } from '../types.js';
import { PREFIX_MATCH, type PrefixMatch } from './prefix-match.js';

export interface ApproximatePrefixOptions {
  /** Characters per block of the prompt text (token ids: ids per block × 4). */
  blockSizeChars: number;
  /** Blocks of a prompt considered. */
  maxPrefixBlocks: number;
  /** Blocks remembered per endpoint (its guessed cache size). */
  lruCapacityPerServer: number;
}

const KEYS = 'approximate-prefix-keys';

/**
 * Guesses who holds what from where this router sent prompts before, without engine events (the
 * approximate prefix scorer llm-d ships as prefix-cache-scorer): the prompt text is cut into
 * fixed-size character blocks, chain-hashed, and each endpoint remembers the last blocks routed to
 * it. Wrong whenever an engine evicts, restarts or was sent traffic by someone else.
 */
export class ApproximatePrefixCacheScorer implements Scorer, PreRequestHook {
  readonly kind = 'scorer';
  readonly type = 'prefix-cache-scorer';
  /** Block hash → endpoints holding it (by this router's account). */
  private readonly holders = new Map<bigint, Set<string>>();
  /** Per endpoint, its blocks in least-recently-routed order (Map keeps insertion order). */
  private readonly perServer = new Map<string, Map<bigint, true>>();

  constructor(
    readonly name: string,
    private readonly options: ApproximatePrefixOptions,
  ) {}

  score(request: SchedulingRequest, candidates: readonly Candidate[]): Scores {
    const keys = this.keysOf(request);
    request.cycle.set(KEYS, keys);
    const out: Scores = new Map();
    let best = 0;
    for (const c of candidates) {
      let run = 0;
      while (run < keys.length && this.holders.get(keys[run]!)?.has(c.endpoint.id)) run++;
      out.set(c.endpoint.id, keys.length > 0 ? run / keys.length : 0);
      best = Math.max(best, run);
    }
    const match: PrefixMatch = { cold: best === 0, totalBlocks: keys.length, bestMatchedBlocks: best };
    request.cycle.set(PREFIX_MATCH, match);
    return out;
  }

  preRequest(request: SchedulingRequest, result: SchedulingResult): void {
    const chosen = result.endpoints[0];
    const keys = request.cycle.get(KEYS) as bigint[] | undefined;
    if (!chosen || !keys || keys.length === 0) return;
    let lru = this.perServer.get(chosen.id);
    if (!lru) this.perServer.set(chosen.id, (lru = new Map()));
    for (const key of keys) {
      lru.delete(key);
      lru.set(key, true);
      let set = this.holders.get(key);
      if (!set) this.holders.set(key, (set = new Set()));
      set.add(chosen.id);
    }
    while (lru.size > this.options.lruCapacityPerServer) {
      const oldest = lru.keys().next().value as bigint;
      lru.delete(oldest);
      const set = this.holders.get(oldest);
      set?.delete(chosen.id);
      if (set?.size === 0) this.holders.delete(oldest);
    }
  }

  private keysOf(request: SchedulingRequest): bigint[] {
    const p = request.prompt;
    if (p === null) return [];
    let text: string;
    if (p.prompt.kind === 'completion') text = p.prompt.prompt;
    else if (p.prompt.kind === 'chat') text = p.prompt.messages.map((m) => `${m.role}\n${typeof m.content === 'string' ? m.content : JSON.stringify(m.content)}\n`).join('');
    else text = Array.from(p.prompt.tokenIds, (t) => String.fromCharCode(t & 0xffff, t >>> 16)).join('');
    const size = this.options.blockSizeChars;
    const blocks = Math.min(Math.floor(text.length / size), this.options.maxPrefixBlocks);
    const keys: bigint[] = [];
    let parent = Buffer.from(`${p.loraName || p.model}\u0000${p.cacheSalt ?? ''}`);
    for (let b = 0; b < blocks; b++) {
      const digest = createHash('sha1').update(parent).update(text.slice(b * size, (b + 1) * size)).digest();
      keys.push(digest.readBigUInt64LE(0));
      parent = digest;
    }
    return keys;
  }
}
