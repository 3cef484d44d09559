import { mergeSpaceSaving, SpaceSaving, type HeavyHitter, type SpaceSavingState } from './space-saving.js';

/** What the sketch keeps of a prefix beside its count. */
export interface PrefixInfo {
  model: string;
  blocks: number;
  /** The key of the previous checkpoint of the same prompt (null at depth 1). */
  parent: bigint | null;
  preview: string | null;
  /** Unix milliseconds. */
  firstSeen: number;
}

/** The prefixes' sketch as plain data, to merge with other processes' (see `mergeTopPrefixes`). */
export type TopPrefixesState = SpaceSavingState<PrefixInfo>;

export interface SharedPrefix {
  /** Request key of the prefix's last block (decimal string). */
  key: string;
  model: string;
  blocks: number;
  tokens: number;
  /** Requests whose prompt began with this prefix (an estimate: may overcount by up to `error`). */
  requests: number;
  error: number;
  /** The start of the first prompt seen with this prefix, when it came as text. */
  preview: string | null;
  firstSeen: string;
}

/**
 * The prompt prefixes most requests share. Each scored prompt counts its request key at block
 * depths 1, 2, 4, 8, … (a key identifies the whole prefix up to it); a heavy-hitter sketch keeps
 * the most frequent. Reported prefixes are the deepest that still explain their requests: a prefix
 * is left out when one checkpoint deeper, a single continuation holds ≥ 90% of its requests.
 */
export class TopPrefixes {
  private readonly sketch: SpaceSaving<PrefixInfo>;

  constructor(
    private readonly blockSize: number,
    capacity = 4096,
  ) {
    this.sketch = new SpaceSaving(capacity);
  }

  get observed(): number {
    return this.sketch.observed;
  }

  observe(model: string, keys: BigUint64Array, preview: () => string | null): void {
    let parent: bigint | null = null;
    let text: string | null | undefined;
    for (let depth = 1; depth <= keys.length; depth *= 2) {
      const key = keys[depth - 1]!;
      const p = parent;
      this.sketch.add(key, () => {
        if (text === undefined) text = preview();
        return { model, blocks: depth, parent: p, preview: text, firstSeen: Date.now() };
      });
      parent = key;
    }
  }

  report(limit: number): SharedPrefix[] {
    return reportPrefixes(this.sketch.top(), this.blockSize, limit);
  }

  /** A copy of the sketch as plain data. */
  state(): TopPrefixesState {
    return this.sketch.state((v) => ({ ...v }));
  }

  clear(): void {
    this.sketch.clear();
  }
}

/**
 * Several processes' sketches as one (each counted its own requests): see `mergeSpaceSaving` for
 * what is exact and what is bounded. A prefix is the same prefix in every process (its key hashes
 * the whole prompt up to it), so its model, depth and parent agree; the preview and first sighting
 * are the earliest process's.
 */
export function mergeTopPrefixes(states: readonly TopPrefixesState[]): TopPrefixesState {
  return mergeSpaceSaving(states, (a, b) => (b.firstSeen < a.firstSeen ? b : a));
}

/**
 * The deepest prefixes that still explain their requests, most requested first, from a sketch's
 * items (most counted first): a prefix is left out when one checkpoint deeper, a single
 * continuation holds ≥ 90% of its requests, or when it may have been seen only once.
 */
export function reportPrefixes(items: readonly HeavyHitter<PrefixInfo>[], blockSize: number, limit: number): SharedPrefix[] {
  const bestChild = new Map<bigint, number>();
  for (const item of items) {
    const parent = item.value.parent;
    if (parent !== null) bestChild.set(parent, Math.max(bestChild.get(parent) ?? 0, item.count));
  }
  const out: SharedPrefix[] = [];
  for (const item of items) {
    if (out.length >= limit) break;
    // A prefix seen once is not shared.
    if (item.count - item.error < 2) continue;
    if ((bestChild.get(item.key) ?? 0) >= 0.9 * item.count) continue;
    out.push({
      key: item.key.toString(),
      model: item.value.model,
      blocks: item.value.blocks,
      tokens: item.value.blocks * blockSize,
      requests: item.count,
      error: item.error,
      preview: item.value.preview,
      firstSeen: new Date(item.value.firstSeen).toISOString(),
    });
  }
  return out;
}
