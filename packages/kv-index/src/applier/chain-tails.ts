/**
 * Where a chain stands after an engine block whose end is not on a request-block boundary (engine
 * blocks smaller than kvix's, or a prompt's trailing partial block): the last complete request key
 * before it, and the tokens (with their engine keys and extras) of the request block still being
 * filled. A later event whose parent is that engine block continues from here, so mismatched block
 * sizes still give exact keys. Bounded: least recently used tails go first.
 */
/** An engine block's span within a chain position, with the identifiers that taint it. */
export interface PendingSegment {
  readonly engineKey: bigint;
  /** Token offsets [start, end) relative to the pending tokens (or the event being applied). */
  readonly start: number;
  readonly end: number;
  /** Multimodal identifiers ([identifier, offset] pairs in the event). */
  readonly mm: readonly string[];
  /** Bare strings: the cache salt, or identifiers from engines that send them bare. */
  readonly bare: readonly string[];
  /**
   * The chain's first engine block: its last bare string is the cache salt (engines list it last,
   * on block 0 only), which belongs to the first request block alone, however many it spans.
   */
  readonly chainStart?: boolean;
}

export interface ChainTail {
  /** Request key before the pending tokens; null = the chain's root. */
  readonly requestKey: bigint | null;
  readonly pendingTokens: Uint32Array;
  /** The engine blocks over the pending tokens: mapped (and their extras used) once the request block completes. */
  readonly pendingSegments: readonly PendingSegment[];
}

export class ChainTails {
  private readonly tails = new Map<bigint, ChainTail>();

  constructor(private readonly max: number) {}

  get size(): number {
    return this.tails.size;
  }

  get(engineKey: bigint): ChainTail | undefined {
    const tail = this.tails.get(engineKey);
    if (tail !== undefined) {
      // Refresh its recency: continuations of a chain arrive close together.
      this.tails.delete(engineKey);
      this.tails.set(engineKey, tail);
    }
    return tail;
  }

  set(engineKey: bigint, tail: ChainTail): void {
    this.tails.delete(engineKey);
    this.tails.set(engineKey, tail);
    if (this.tails.size > this.max) {
      const oldest = this.tails.keys().next().value;
      if (oldest !== undefined) this.tails.delete(oldest);
    }
  }

  delete(engineKey: bigint): void {
    this.tails.delete(engineKey);
  }
}
