import { ByteWriter, utf8Bytes } from './byte-writer.js';
import { CborWriter, CBOR_NULL } from './cbor.js';
import { BlockKeysError } from './errors.js';
import { fnv1a64, fnv1a64Into } from './fnv.js';
import { wordsOf } from './native-endian.js';
import { parseU64 } from './u64.js';
import { xxh64, xxh64Into } from './xxh64.js';

/**
 * `cbor-fnv` is llm-d's default and the only choice when an index is shared with llm-d; `xxh64`
 * is faster but must never be mixed with `cbor-fnv` in one index.
 */
export type RequestKeyAlgorithm = 'cbor-fnv' | 'xxh64';
export const REQUEST_KEY_ALGORITHMS: readonly RequestKeyAlgorithm[] = ['cbor-fnv', 'xxh64'];

/** Identifiers that taint one block's key (multimodal identifiers, cache salt); null = none. */
export type BlockExtras = readonly string[] | null;

export interface RequestKeyConfig {
  /** Tokens per block (llm-d's blockSizeTokens). Default 16; deployments often use 64. */
  blockSize?: number;
  /** llm-d's hashSeed: should match the engines' PYTHONHASHSEED by convention. Default "". */
  seed?: string;
  algorithm?: RequestKeyAlgorithm;
}

export interface RequestKeyOptions {
  /**
   * Continue a chain from this request key instead of the model's root. 0 means "no parent", as
   * in llm-d (its empty block hash).
   */
  parent?: bigint | null;
  /** Per-block extras; missing entries mean none. Entries past the last full block are ignored. */
  extras?: readonly BlockExtras[] | null;
}

export const DEFAULT_BLOCK_SIZE = 16;
const MAX_BLOCK_SIZE = 1 << 20;
const ROOT_CACHE_LIMIT = 4096;

/** Canonical CBOR of the one-entry map {"Hash": id}, minus the id's text. */
const HASH_MAP_PREFIX = new Uint8Array([0xa1, 0x64, 0x48, 0x61, 0x73, 0x68]);

/** Marks the root block, whose token slot is absent rather than empty. */
const NO_TOKENS: ArrayLike<number> = Object.freeze([]);

interface BlockFunction {
  /** Key of one block from its parent words, tokens[start,end) and pre-encoded extras. */
  hashBlock(
    parentLo: number,
    parentHi: number,
    tokens: ArrayLike<number>,
    start: number,
    end: number,
    extras: Uint8Array | null,
    out: Uint32Array,
    outIndex: number,
  ): void;
  encodeExtras(ids: readonly string[]): Uint8Array;
  /** The root block's extra slot, which carries the model (or LoRA adapter) name. */
  encodeRootExtra(model: string): Uint8Array;
  init(seed: string): bigint;
}

/** H([parent, tokens, extra]) = FNV-1a-64 over canonical CBOR, exactly as llm-d computes it. */
class CborFnvBlocks implements BlockFunction {
  private readonly w = new CborWriter(4096);

  hashBlock(
    parentLo: number,
    parentHi: number,
    tokens: ArrayLike<number>,
    start: number,
    end: number,
    extras: Uint8Array | null,
    out: Uint32Array,
    outIndex: number,
  ): void {
    const w = this.w;
    w.reset();
    w.u8(0x83);
    w.head64(0, parentHi, parentLo);
    // The root block has no tokens: its token slot is CBOR null, not an empty array.
    if (tokens === NO_TOKENS) w.nil();
    else w.uint32Array(tokens, start, end);
    if (extras === null) w.u8(CBOR_NULL);
    else w.raw(extras);
    fnv1a64Into(w.buf, w.pos, out, outIndex);
  }

  encodeExtras(ids: readonly string[]): Uint8Array {
    const w = new CborWriter(64);
    w.arrayHead(ids.length);
    for (const id of ids) {
      w.raw(HASH_MAP_PREFIX);
      w.text(id);
    }
    return w.toBytes();
  }

  encodeRootExtra(model: string): Uint8Array {
    // A bare text string, unlike block extras (an array of {"Hash": id} maps).
    const w = new CborWriter(64);
    w.text(model);
    return w.toBytes();
  }

  init(seed: string): bigint {
    return fnv1a64(utf8Bytes(seed));
  }
}

/** One XXH64 over parent (8 B LE), tokens (4 B LE each), then each extra as u64-LE length + UTF-8. */
class Xxh64Blocks implements BlockFunction {
  private readonly w = new ByteWriter(4096);

  hashBlock(
    parentLo: number,
    parentHi: number,
    tokens: ArrayLike<number>,
    start: number,
    end: number,
    extras: Uint8Array | null,
    out: Uint32Array,
    outIndex: number,
  ): void {
    const w = this.w;
    w.reset();
    const n = end - start;
    w.reserve(8 + 4 * n);
    const b = w.buf;
    let p = 0;
    b[p++] = parentLo & 0xff;
    b[p++] = (parentLo >>> 8) & 0xff;
    b[p++] = (parentLo >>> 16) & 0xff;
    b[p++] = parentLo >>> 24;
    b[p++] = parentHi & 0xff;
    b[p++] = (parentHi >>> 8) & 0xff;
    b[p++] = (parentHi >>> 16) & 0xff;
    b[p++] = parentHi >>> 24;
    for (let i = start; i < start + n; i++) {
      const t = tokens[i]! >>> 0;
      b[p++] = t & 0xff;
      b[p++] = (t >>> 8) & 0xff;
      b[p++] = (t >>> 16) & 0xff;
      b[p++] = t >>> 24;
    }
    w.pos = p;
    if (extras !== null) w.raw(extras);
    xxh64Into(w.buf, w.pos, out, outIndex);
  }

  encodeExtras(ids: readonly string[]): Uint8Array {
    const w = new ByteWriter(64);
    for (const id of ids) {
      const bytes = utf8Bytes(id);
      const len = bytes.length;
      w.reserve(8);
      for (let k = 0; k < 8; k++) w.buf[w.pos++] = k < 4 ? (len >>> (8 * k)) & 0xff : 0;
      w.raw(bytes);
    }
    return w.toBytes();
  }

  encodeRootExtra(model: string): Uint8Array {
    return this.encodeExtras([model]);
  }

  init(seed: string): bigint {
    return xxh64(utf8Bytes(seed));
  }
}

function validateBlockSize(blockSize: number): number {
  if (!Number.isInteger(blockSize) || blockSize <= 0 || blockSize > MAX_BLOCK_SIZE) {
    throw new BlockKeysError('INVALID_BLOCK_SIZE', `blockSize must be an integer in [1, ${MAX_BLOCK_SIZE}], got ${String(blockSize)}`);
  }
  return blockSize;
}

export function isRequestKeyAlgorithm(value: unknown): value is RequestKeyAlgorithm {
  return value === 'cbor-fnv' || value === 'xxh64';
}

/**
 * Computes request keys: the content-addressed block keys kvix indexes and looks up. Both the
 * scoring path (prompt tokens) and the indexing path (an event's token_ids) use the same hasher,
 * so engine-side hashing settings never have to match kvix's.
 */
export class RequestKeyHasher {
  readonly blockSize: number;
  readonly seed: string;
  readonly algorithm: RequestKeyAlgorithm;
  /** The chain seed derived from `seed` (FNV-1a-64 or XXH64 of its UTF-8 bytes). */
  readonly initKey: bigint;

  private readonly blocks: BlockFunction;
  private readonly initLo: number;
  private readonly initHi: number;
  private readonly roots = new Map<string, bigint>();
  private readonly extrasCache = new Map<string, Uint8Array>();
  private readonly scratch = new Uint32Array(2);

  constructor(config: RequestKeyConfig = {}) {
    this.blockSize = validateBlockSize(config.blockSize ?? DEFAULT_BLOCK_SIZE);
    const seed = config.seed ?? '';
    if (typeof seed !== 'string') throw new BlockKeysError('INVALID_SEED', 'seed must be a string');
    this.seed = seed;
    const algorithm = config.algorithm ?? 'cbor-fnv';
    if (!isRequestKeyAlgorithm(algorithm)) {
      throw new BlockKeysError('INVALID_ALGORITHM', `unknown request-key algorithm ${JSON.stringify(algorithm)}; expected one of ${REQUEST_KEY_ALGORITHMS.join(', ')}`);
    }
    this.algorithm = algorithm;
    this.blocks = algorithm === 'xxh64' ? new Xxh64Blocks() : new CborFnvBlocks();
    this.initKey = this.blocks.init(seed);
    this.initLo = Number(this.initKey & 0xffffffffn);
    this.initHi = Number(this.initKey >> 32n);
  }

  /** Number of full blocks in a prompt of `tokenCount` tokens (a trailing partial block is dropped). */
  blockCount(tokenCount: number): number {
    return Math.floor(tokenCount / this.blockSize);
  }

  /** root(model) = H([init, null, model]); the model is the LoRA adapter's name when there is one. */
  rootKey(model: string): bigint {
    let root = this.roots.get(model);
    if (root === undefined) {
      const out = this.scratch;
      this.blocks.hashBlock(this.initLo, this.initHi, NO_TOKENS, 0, 0, this.blocks.encodeRootExtra(model), out, 0);
      root = (BigInt(out[1]!) << 32n) | BigInt(out[0]!);
      if (this.roots.size >= ROOT_CACHE_LIMIT) this.roots.clear();
      this.roots.set(model, root);
    }
    return root;
  }

  /**
   * The request key of every full block of `tokens`, chained from the model's root (or from
   * `options.parent`). Token ids are unsigned 32-bit integers.
   */
  keys(tokens: ArrayLike<number>, model: string, options: RequestKeyOptions = {}): BigUint64Array {
    const n = this.blockCount(tokens.length);
    const keys = new BigUint64Array(n);
    if (n === 0) return keys;
    const words = wordsOf(keys);
    const parent = options.parent;
    const start = parent !== undefined && parent !== null && parent !== 0n ? parseU64(parent, 'parent') : this.rootKey(model);
    let lo = Number(start & 0xffffffffn);
    let hi = Number(start >> 32n);
    const extras = options.extras ?? null;
    const bs = this.blockSize;
    for (let i = 0; i < n; i++) {
      const ids = extras === null ? null : (extras[i] ?? null);
      const encoded = ids === null || ids.length === 0 ? null : this.encodedExtras(ids);
      this.blocks.hashBlock(lo, hi, tokens, i * bs, (i + 1) * bs, encoded, words, 2 * i);
      lo = words[2 * i]!;
      hi = words[2 * i + 1]!;
    }
    return keys;
  }

  private encodedExtras(ids: readonly string[]): Uint8Array {
    // Extras repeat across requests (one image, one salt): cache their encoding by content.
    // A NUL prefix keeps a single id from colliding with a list's JSON text.
    const cacheKey = ids.length === 1 ? `\u0000${ids[0]!}` : JSON.stringify(ids);
    let bytes = this.extrasCache.get(cacheKey);
    if (bytes === undefined) {
      bytes = this.blocks.encodeExtras(ids);
      if (this.extrasCache.size >= ROOT_CACHE_LIMIT) this.extrasCache.clear();
      this.extrasCache.set(cacheKey, bytes);
    }
    return bytes;
  }
}
