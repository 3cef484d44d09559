/** What a prefix scorer learned in a scheduling cycle, for the plugins after it (no-hit LRU). */
export interface PrefixMatch {
  /** No candidate holds even the first block: the request is cold. */
  cold: boolean;
  totalBlocks: number;
  /** The longest run any candidate holds. */
  bestMatchedBlocks: number;
}

export const PREFIX_MATCH = 'prefix-match';
