/** What a prefix scorer learned in a scheduling cycle, for the plugins after it (no-hit LRU). */
export interface PrefixMatch {
  /** No candidate holds even the first block: the request is cold. */
  cold: boolean;
  totalBlocks: number;
  /** The longest run any candidate holds. */
  bestMatchedBlocks: number;
  /** Per candidate, the consecutive prefix blocks it holds (for the latency predictor's prefix_cache_score). */
  matchedBlocks?: ReadonlyMap<string, number>;
  /** The prompt's length in tokens, when the scorer tokenized it. */
  promptTokens?: number | null;
}

export const PREFIX_MATCH = 'prefix-match';
