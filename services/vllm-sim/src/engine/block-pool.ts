/**
 * The GPU KV-block pool with vLLM's prefix caching semantics:
 * - a block holds one full block of tokens once it is cached, identified by its block hash;
 * - requests share cached blocks (reference counts); a block whose count drops to 0 goes to the
 *   tail of the free queue but stays cached, so a later request can still hit it;
 * - allocation takes blocks from the head of the free queue (least recently freed first) and
 *   evicts their cached contents — that is what produces BlockRemoved;
 * - identical blocks computed concurrently are cached twice (vLLM does not de-duplicate), so the
 *   same hash can be announced twice and removed twice.
 */

export interface CachedBlockInfo {
  /** Full digest (the chain feeds forward full digests). */
  digest: Uint8Array;
  /** The 64-bit value events carry. */
  wire: bigint;
  /** What vLLM 0.34's offloading connector describes an offloaded block with. */
  meta?: BlockMeta;
}

/** A cached block's tokens, parent and keys (for self-describing offload events). */
export interface BlockMeta {
  tokens: Uint32Array;
  parentWire: bigint | null;
  loraName: string | null;
  extraKeys: unknown[] | null;
}

const NONE = -1;

export interface EvictedBlock {
  wire: bigint;
  digest: Uint8Array;
  meta?: BlockMeta;
}

export class BlockPool {
  readonly numBlocks: number;
  private readonly refCount: Int32Array;
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private readonly inFree: Uint8Array;
  private readonly info: (CachedBlockInfo | null)[];
  private head = NONE;
  private tail = NONE;
  private freeCount = 0;
  /** Hex digest → blocks caching it (normally one; two after a concurrent duplicate). */
  private readonly cached = new Map<string, number[]>();

  constructor(numBlocks: number) {
    if (!Number.isInteger(numBlocks) || numBlocks < 2) throw new RangeError(`num GPU blocks must be an integer >= 2, got ${numBlocks}`);
    this.numBlocks = numBlocks;
    this.refCount = new Int32Array(numBlocks);
    this.prev = new Int32Array(numBlocks).fill(NONE);
    this.next = new Int32Array(numBlocks).fill(NONE);
    this.inFree = new Uint8Array(numBlocks);
    this.info = new Array<CachedBlockInfo | null>(numBlocks).fill(null);
    for (let b = 0; b < numBlocks; b++) this.pushTail(b);
  }

  get free(): number {
    return this.freeCount;
  }

  /** Fraction of blocks held by requests (vllm:kv_cache_usage_perc). */
  get usage(): number {
    return 1 - this.freeCount / this.numBlocks;
  }

  get cachedBlocks(): number {
    let n = 0;
    for (const list of this.cached.values()) n += list.length;
    return n;
  }

  /** The first cached block for a digest, if any. */
  lookup(hex: string): number {
    const list = this.cached.get(hex);
    return list === undefined ? NONE : list[0]!;
  }

  /** A prefix hit: take a reference (and out of the free queue if nobody held it). */
  touch(block: number): void {
    if (this.refCount[block] === 0 && this.inFree[block] === 1) this.unlink(block);
    this.refCount[block]!++;
  }

  /**
   * Takes `count` blocks from the head of the free queue, evicting whatever they cached.
   * Returns null (taking nothing) when not enough blocks are free.
   */
  allocate(count: number, evicted: EvictedBlock[]): number[] | null {
    if (count > this.freeCount) return null;
    const out: number[] = [];
    for (let i = 0; i < count; i++) {
      const b = this.head;
      this.unlink(b);
      const cachedInfo = this.info[b];
      if (cachedInfo) {
        this.uncache(b, cachedInfo);
        evicted.push(cachedInfo.meta ? { wire: cachedInfo.wire, digest: cachedInfo.digest, meta: cachedInfo.meta } : { wire: cachedInfo.wire, digest: cachedInfo.digest });
      }
      this.refCount[b] = 1;
      out.push(b);
    }
    return out;
  }

  /** Marks an allocated block as holding a full block with this hash (it can now be hit). */
  cache(block: number, digest: Uint8Array, wire: bigint, meta?: BlockMeta): void {
    const hex = Buffer.from(digest).toString('hex');
    this.info[block] = meta ? { digest, wire, meta } : { digest, wire };
    const list = this.cached.get(hex);
    if (list) list.push(block);
    else this.cached.set(hex, [block]);
  }

  isCached(block: number): boolean {
    return this.info[block] !== null;
  }

  infoOf(block: number): CachedBlockInfo | null {
    return this.info[block] ?? null;
  }

  /** Drops one reference from each block, in eviction priority order (first listed goes first). */
  release(blocks: readonly number[]): void {
    for (const b of blocks) {
      this.refCount[b]!--;
      if (this.refCount[b] === 0) this.pushTail(b);
    }
  }

  /** Held by no request? (reset_prefix_cache only succeeds then.) */
  allFree(): boolean {
    return this.freeCount === this.numBlocks;
  }

  /** Forgets every cached hash (reset_prefix_cache, engine restart). */
  resetCache(): void {
    for (let b = 0; b < this.numBlocks; b++) this.info[b] = null;
    this.cached.clear();
  }

  private uncache(block: number, cachedInfo: CachedBlockInfo): void {
    const hex = Buffer.from(cachedInfo.digest).toString('hex');
    const list = this.cached.get(hex);
    if (list) {
      const at = list.indexOf(block);
      if (at >= 0) list.splice(at, 1);
      if (list.length === 0) this.cached.delete(hex);
    }
    this.info[block] = null;
  }

  private pushTail(b: number): void {
    this.prev[b] = this.tail;
    this.next[b] = NONE;
    if (this.tail !== NONE) this.next[this.tail] = b;
    else this.head = b;
    this.tail = b;
    this.inFree[b] = 1;
    this.freeCount++;
  }

  private unlink(b: number): void {
    const p = this.prev[b]!;
    const n = this.next[b]!;
    if (p !== NONE) this.next[p] = n;
    else this.head = n;
    if (n !== NONE) this.prev[n] = p;
    else this.tail = p;
    this.prev[b] = NONE;
    this.next[b] = NONE;
    this.inFree[b] = 0;
    this.freeCount--;
  }
}
