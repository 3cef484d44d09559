import { createHash } from 'node:crypto';
import { u64FromTrailingBytes } from '@kvix/block-keys';
import type { BlockRemoved, BlockStored } from '@kvix/kv-events';
import type { EvictedBlock } from './block-pool.js';

/**
 * How the CPU tier announces itself:
 * - `offloading-connector`: vLLM's OffloadingConnector — GPU blocks evicted into a CPU pool are
 *   announced in the GPU hash space with medium "CPU", no tokens and block_size 0;
 * - `lmcache`: LMCache — prompts are written through in chunks (default 256 tokens, the last one
 *   possibly partial) announced with their tokens, medium "cpu", in LMCache's own hash space.
 */
export type OffloadMode = 'none' | 'offloading-connector' | 'lmcache';

interface LmChunk {
  hash: bigint;
  tokens: number;
}

/** Recently used first out: a Map's insertion order is the LRU order (refresh = delete + set). */
class Lru<K, V> {
  private readonly map = new Map<K, V>();
  get size(): number {
    return this.map.size;
  }
  has(key: K): boolean {
    return this.map.has(key);
  }
  peek(key: K): boolean {
    return this.map.has(key);
  }
  touch(key: K): boolean {
    const v = this.map.get(key);
    if (v === undefined) return false;
    this.map.delete(key);
    this.map.set(key, v);
    return true;
  }
  set(key: K, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
  }
  oldest(): [K, V] | undefined {
    const it = this.map.entries().next();
    return it.done ? undefined : it.value;
  }
  delete(key: K): void {
    this.map.delete(key);
  }
  clear(): void {
    this.map.clear();
  }
}

export class CpuTier {
  /** Offloading connector: hex digest → wire hash, capacity in blocks. */
  private readonly blocks = new Lru<string, bigint>();
  /** LMCache: chunk key → chunk; capacity in tokens. */
  private readonly chunks = new Lru<string, LmChunk>();
  private chunkTokens = 0;

  constructor(
    readonly mode: OffloadMode,
    private readonly capacityBlocks: number,
    private readonly gpuBlockSize: number,
    readonly chunkSize: number,
  ) {}

  get enabled(): boolean {
    return this.mode !== 'none' && this.capacityBlocks > 0;
  }

  /** Blocks worth of data held (for metrics). */
  get usedBlocks(): number {
    return this.mode === 'lmcache' ? Math.ceil(this.chunkTokens / this.gpuBlockSize) : this.blocks.size;
  }

  /** GPU evictions move into the CPU pool (offloading connector). Returns the events to publish. */
  onGpuEvicted(evicted: readonly EvictedBlock[], out: (BlockStored | BlockRemoved)[]): void {
    if (this.mode !== 'offloading-connector' || !this.enabled || evicted.length === 0) return;
    for (const e of evicted) {
      const hex = Buffer.from(e.digest).toString('hex');
      if (this.blocks.touch(hex)) continue;
      while (this.blocks.size >= this.capacityBlocks) {
        const [oldHex, oldWire] = this.blocks.oldest()!;
        this.blocks.delete(oldHex);
        out.push({ type: 'BlockRemoved', blockHashes: BigUint64Array.of(oldWire), blockHashDigests: [Buffer.from(oldHex, 'hex')], medium: 'CPU', groupIdx: 0 });
      }
      this.blocks.set(hex, e.wire);
      out.push({
        type: 'BlockStored',
        blockHashes: BigUint64Array.of(e.wire),
        blockHashDigests: [e.digest],
        parentBlockHash: null,
        tokenIds: new Uint32Array(0),
        blockSize: 0,
        loraId: null,
        medium: 'CPU',
        loraName: null,
        extraKeys: null,
        groupIdx: 0,
        kvCacheSpecKind: null,
        kvCacheSpecSlidingWindow: null,
      });
    }
  }

  /** Offloading connector: is this GPU block (by digest) in the CPU pool? Refreshes it if so. */
  holdsBlock(digestHex: string): boolean {
    return this.mode === 'offloading-connector' && this.blocks.touch(digestHex);
  }

  /** The same without refreshing its recency (for inspection). */
  peekBlock(digestHex: string): boolean {
    return this.mode === 'offloading-connector' && this.blocks.peek(digestHex);
  }

  /**
   * LMCache: how many leading prompt tokens its chunks hold (chunk granularity from token 0).
   * `chunkKeys` are the prompt's chunk keys from chunkKeysFor. `touch` refreshes their recency.
   */
  cachedPrefixTokens(chunkKeys: readonly string[], chunkLengths: readonly number[], touch = true): number {
    if (this.mode !== 'lmcache') return 0;
    let tokens = 0;
    for (let i = 0; i < chunkKeys.length; i++) {
      const held = touch ? this.chunks.touch(chunkKeys[i]!) : this.chunks.peek(chunkKeys[i]!);
      if (!held) break;
      tokens += chunkLengths[i]!;
    }
    return tokens;
  }

  /**
   * LMCache's chunk keys and announced hashes for a token sequence: a chain over chunks of
   * `chunkSize` tokens (the last chunk may be partial), keyed by the LoRA adapter too.
   */
  chunkKeysFor(tokens: ArrayLike<number>, loraName: string | null): { keys: string[]; hashes: bigint[]; lengths: number[] } {
    const keys: string[] = [];
    const hashes: bigint[] = [];
    const lengths: number[] = [];
    let prev = Buffer.from(loraName ?? '', 'utf8');
    for (let start = 0; start < tokens.length; start += this.chunkSize) {
      const end = Math.min(tokens.length, start + this.chunkSize);
      const h = createHash('sha256').update('lmcache').update(prev);
      const buf = Buffer.allocUnsafe(4 * (end - start));
      for (let i = start; i < end; i++) buf.writeUInt32LE(tokens[i]! >>> 0, 4 * (i - start));
      const digest = h.update(buf).digest();
      keys.push(digest.toString('hex'));
      hashes.push(u64FromTrailingBytes(digest));
      lengths.push(end - start);
      prev = digest;
    }
    return { keys, hashes, lengths };
  }

  /** LMCache write-through of a prompt: chunks not yet held are stored and announced. */
  saveChunks(tokens: Uint32Array, loraName: string | null, out: (BlockStored | BlockRemoved)[]): void {
    if (this.mode !== 'lmcache' || !this.enabled) return;
    const capacityTokens = this.capacityBlocks * this.gpuBlockSize;
    const { keys, hashes, lengths } = this.chunkKeysFor(tokens, loraName);
    let start = 0;
    for (let i = 0; i < keys.length; i++) {
      const len = lengths[i]!;
      if (!this.chunks.touch(keys[i]!) && len <= capacityTokens) {
        while (this.chunkTokens + len > capacityTokens) {
          const [oldKey, old] = this.chunks.oldest()!;
          this.chunks.delete(oldKey);
          this.chunkTokens -= old.tokens;
          out.push({ type: 'BlockRemoved', blockHashes: BigUint64Array.of(old.hash), medium: 'cpu', groupIdx: null });
        }
        this.chunks.set(keys[i]!, { hash: hashes[i]!, tokens: len });
        this.chunkTokens += len;
        out.push({
          type: 'BlockStored',
          blockHashes: BigUint64Array.of(hashes[i]!),
          parentBlockHash: i === 0 ? null : hashes[i - 1]!,
          tokenIds: tokens.slice(start, start + len),
          blockSize: len,
          loraId: null,
          medium: 'cpu',
          loraName,
          extraKeys: null,
          groupIdx: null,
          kvCacheSpecKind: null,
          kvCacheSpecSlidingWindow: null,
        });
      }
      start += len;
    }
  }

  clear(): void {
    this.blocks.clear();
    this.chunks.clear();
    this.chunkTokens = 0;
  }
}
