import { SpaceSaving } from './space-saving.js';

interface PrefixInfo {
  model: string;
  blocks: number;
  /** The key of the previous checkpoint of the same prompt (null at depth 1). */
  parent: bigint | null;
  preview: string | null;
  firstSeen: number;
}

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
    const all = this.sketch.top();
    const bestChild = new Map<bigint, number>();
    for (const item of all) {
      const parent = item.value.parent;
      if (parent !== null) bestChild.set(parent, Math.max(bestChild.get(parent) ?? 0, item.count));
    }
    const out: SharedPrefix[] = [];
    for (const item of all) {
      if (out.length >= limit) break;
      // A prefix seen once is not shared.
      if (item.count - item.error < 2) continue;
      if ((bestChild.get(item.key) ?? 0) >= 0.9 * item.count) continue;
      out.push({
        key: item.key.toString(),
        model: item.value.model,
        blocks: item.value.blocks,
        tokens: item.value.blocks * this.blockSize,
        requests: item.count,
        error: item.error,
        preview: item.value.preview,
        firstSeen: new Date(item.value.firstSeen).toISOString(),
      });
    }
    return out;
  }

  clear(): void {
    this.sketch.clear();
  }
}
