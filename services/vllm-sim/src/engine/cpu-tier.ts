import { createHash } from 'node:crypto';
import { u64FromTrailingBytes } from '@kvix/block-keys';
import type { BlockRemoved, BlockStored } from '@kvix/kv-events';
import type { EvictedBlock } from './block-pool.js';

/**
 * How the CPU tier announces itself:
 * - `offloading-connector`: vLLM's OffloadingConnector — GPU blocks evicted into a CPU pool are
 *   announced in the GPU hash space with medium "CPU": vLLM 0.34 describes each offloaded chunk
 *   (tokens, parent, locality "LOCAL"); older versions send placeholders (no tokens, block_size 0);
 * - `lmcache`: LMCache — full chunks of a prompt (default 256 tokens) written through in LMCache's
 *   own hash space, as vLLM's stream carries them: in-process (`inproc`, medium "cpu", one event
 *   per chunk with one token of the next chunk, parent 0 for the first chunk of a store that skipped
 *   chunks already saved, no removals ever) or by the multiprocess server (`mp`, medium "CPU",
 *   exact chunks, real parents, a removal per eviction and of every chunk on a server restart).
 */
export type OffloadMode = 'none' | 'offloading-connector' | 'lmcache';
export type LmcacheMode = 'inproc' | 'mp';

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
    readonly lmcacheMode: LmcacheMode = 'inproc',
    /** vLLM 0.34's self-describing offload events (else the placeholders older versions send). */
    private readonly selfDescribing = true,
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
      if (this.selfDescribing && e.meta !== undefined) {
        // vLLM 0.34: the offloaded chunk (one block here) with its tokens and parent, local to the pod.
        out.push({
          type: 'BlockStored',
          blockHashes: BigUint64Array.of(e.wire),
          blockHashDigests: [e.digest],
          parentBlockHash: e.meta.parentWire,
          tokenIds: e.meta.tokens,
          blockSize: this.gpuBlockSize,
          loraId: null,
          medium: 'CPU',
          loraName: e.meta.loraName,
          extraKeys: e.meta.extraKeys === null ? null : [e.meta.extraKeys as never],
          groupIdx: 0,
          kvCacheSpecKind: 'full_attention',
          kvCacheSpecSlidingWindow: null,
          locality: 'LOCAL',
        });
        continue;
      }
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
   * LMCache's chunk keys and announced hashes for a token sequence: a chain over its full chunks
   * of `chunkSize` tokens (an unfull chunk is not saved by default), keyed by the LoRA adapter too.
   */
  chunkKeysFor(tokens: ArrayLike<number>, loraName: string | null): { keys: string[]; hashes: bigint[]; lengths: number[] } {
    const keys: string[] = [];
    const hashes: bigint[] = [];
    const lengths: number[] = [];
    let prev = Buffer.from(loraName ?? '', 'utf8');
    for (let start = 0; start + this.chunkSize <= tokens.length; start += this.chunkSize) {
      const end = start + this.chunkSize;
      const h = createHash('sha256').update('lmcache').update(prev);
      const buf = Buffer.allocUnsafe(4 * (end - start));
      for (let i = start; i < end; i++) buf.writeUInt32LE(tokens[i]! >>> 0, 4 * (i - start));
      const digest = h.update(buf).digest();
      keys.push(digest.toString('hex'));
      // In-process: Python's hash() of the chunk, a signed int64; MP: blake3 folded to a u64.
      hashes.push(u64FromTrailingBytes(digest));
      lengths.push(end - start);
      prev = digest;
    }
    return { keys, hashes, lengths };
  }

  /**
   * LMCache write-through of a prompt once prefilled. The store starts past the leading chunks
   * LMCache already holds (the request's lookup hit them); each new chunk is announced as the
   * configured path announces it (see OffloadMode).
   */
  saveChunks(tokens: Uint32Array, loraName: string | null, out: (BlockStored | BlockRemoved)[]): void {
    if (this.mode !== 'lmcache' || !this.enabled) return;
    const capacityTokens = this.capacityBlocks * this.gpuBlockSize;
    const { keys, hashes, lengths } = this.chunkKeysFor(tokens, loraName);
    const inproc = this.lmcacheMode === 'inproc';
    let skipped = 0;
    while (skipped < keys.length && this.chunks.touch(keys[skipped]!)) skipped++;
    // vLLM's LMCache connector keeps a running parent that starts at 0, not None.
    let runningParent: bigint | null = skipped === 0 ? null : inproc ? 0n : hashes[skipped - 1]!;
    for (let i = skipped; i < keys.length; i++) {
      const len = lengths[i]!;
      const start = i * this.chunkSize;
      if (this.chunks.touch(keys[i]!) || len > capacityTokens) {
        runningParent = hashes[i]!;
        continue;
      }
      while (this.chunkTokens + len > capacityTokens) {
        const [oldKey, old] = this.chunks.oldest()!;
        this.chunks.delete(oldKey);
        this.chunkTokens -= old.tokens;
        // In-process LMCache evicts silently; the MP server's log carries the eviction.
        if (!inproc) out.push({ type: 'BlockRemoved', blockHashes: BigUint64Array.of(old.hash), medium: 'CPU', groupIdx: null });
      }
      this.chunks.set(keys[i]!, { hash: hashes[i]!, tokens: len });
      this.chunkTokens += len;
      out.push({
        type: 'BlockStored',
        blockHashes: BigUint64Array.of(hashes[i]!),
        parentBlockHash: i === 0 ? null : runningParent,
        // In-process: tokens[start:end+1], one token of the next chunk included.
        tokenIds: tokens.slice(start, inproc ? Math.min(tokens.length, start + len + 1) : start + len),
        blockSize: len,
        loraId: null,
        medium: inproc ? 'cpu' : 'CPU',
        loraName,
        extraKeys: null,
        groupIdx: null,
        kvCacheSpecKind: null,
        kvCacheSpecSlidingWindow: null,
        ...(inproc ? { signedHashes: true } : {}),
      });
      runningParent = hashes[i]!;
    }
  }

  /**
   * The LMCache MP server restarted (or its stream failed): the connector removes every chunk it
   * announced in one BlockRemoved, and the server starts empty.
   */
  restartLmcacheServer(out: (BlockStored | BlockRemoved)[]): void {
    if (this.mode !== 'lmcache' || this.lmcacheMode !== 'mp') return;
    const all: bigint[] = [];
    for (;;) {
      const oldest = this.chunks.oldest();
      if (oldest === undefined) break;
      all.push(oldest[1].hash);
      this.chunks.delete(oldest[0]);
    }
    this.chunkTokens = 0;
    if (all.length > 0) out.push({ type: 'BlockRemoved', blockHashes: BigUint64Array.from(all), medium: 'CPU', groupIdx: null });
  }

  clear(): void {
    this.blocks.clear();
    this.chunks.clear();
    this.chunkTokens = 0;
  }
}
