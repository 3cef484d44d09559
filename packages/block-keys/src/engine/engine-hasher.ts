import { createHash, randomBytes } from 'node:crypto';
import { sortPlaceholders, validatePlaceholders, type MultimodalPlaceholder } from '../block-extras.js';
import { CborWriter, type PyValue } from '../cbor.js';
import { BlockKeysError } from '../errors.js';
import { u64FromTrailingBytes } from '../u64.js';
import { PickleWriter } from './pickle.js';
import { xxh3_128 } from './xxh3-128.js';

/** vLLM's `--prefix-caching-hash-algo` values (sha256_cbor_64bit: vLLM 0.10.0–0.10.1 only). */
export type EngineHashAlgorithm = 'sha256' | 'sha256_cbor' | 'xxhash' | 'xxhash_cbor' | 'sha256_cbor_64bit';
export const ENGINE_HASH_ALGORITHMS: readonly EngineHashAlgorithm[] = [
  'sha256',
  'sha256_cbor',
  'xxhash',
  'xxhash_cbor',
  'sha256_cbor_64bit',
];

/** The seed vLLM ≥ 0.33 uses for cryptographic algorithms when PYTHONHASHSEED is unset. */
export const VLLM_DEFAULT_NONE_HASH_SEED = 'vllm-none-hash';

/**
 * How a block's extra keys enter its hash. `tagged` (vLLM ≥ 0.33): tuples naming what they are —
 * `("lora", name, path)`, `("mm", identifier, offset)`, `("cache_salt", salt)`,
 * `("prompt_embeds", digest)`. `untagged` (vLLM ≤ 0.32): the bare values (LoRA name, `(identifier,
 * offset)`, salt, digest). Events carry the untagged form either way.
 */
export type EngineHashFormat = 'tagged' | 'untagged';
export const ENGINE_HASH_FORMATS: readonly EngineHashFormat[] = ['tagged', 'untagged'];

export function isEngineHashAlgorithm(value: unknown): value is EngineHashAlgorithm {
  return typeof value === 'string' && (ENGINE_HASH_ALGORITHMS as readonly string[]).includes(value);
}

export interface EngineHashConfig {
  algorithm: EngineHashAlgorithm;
  /**
   * PYTHONHASHSEED as a string; null means unset: vLLM's rule for the algorithm then applies
   * (tagged format: sha256/sha256_cbor seed with "vllm-none-hash", xxhash/xxhash_cbor with random
   * bytes; untagged: random for every algorithm, so nothing is reproducible).
   */
  pythonHashSeed: string | null;
  blockSize: number;
  /** Default `tagged` (vLLM ≥ 0.33). */
  hashFormat?: EngineHashFormat;
  /**
   * vLLM's num_hash_lookahead_tokens (EAGLE block-drop drafters): block i is hashed only once L
   * more tokens exist, and its extra keys become `(E, t[(i+1)B], …)`. Default 0.
   */
  numHashLookaheadTokens?: number;
}

/** What in a request, besides its tokens, changes vLLM's block hashes. */
export interface EngineRequestExtras {
  /** LoRA adapter name (every block; all algorithms but sha256_cbor_64bit). */
  loraName?: string | null;
  /** LoRA adapter path: the tagged format hashes it with the name. */
  loraPath?: string | null;
  /** LoRA integer id: what sha256_cbor_64bit (vLLM 0.10.0–0.10.1) keyed adapters by. */
  loraIntId?: number | null;
  /** Block 0 only, and only when non-empty. */
  cacheSalt?: string | null;
  multimodal?: readonly MultimodalPlaceholder[] | null;
  /** Per-block SHA-256 digests of prompt embeddings, when the request has them. */
  promptEmbedsDigests?: readonly (Uint8Array | null)[] | null;
  /**
   * The prompt's embedding rows, one per token, as raw tensor bytes: each block's digest is the
   * SHA-256 of its rows (of its hash window, with lookahead). Used when promptEmbedsDigests is not given.
   */
  promptEmbedsRows?: readonly Uint8Array[] | null;
}

export interface EngineBlockHashes {
  /** Full digests, chained block to block (the 64-bit algorithm chains its wire value instead). */
  digests: Uint8Array[];
  /** The value published in KV events: the digest's last 8 bytes, big-endian. */
  blockHashes: BigUint64Array;
}

type Serialize = (value: PyValue) => Uint8Array;
type Digest = (bytes: Uint8Array) => Uint8Array;

function sha256(bytes: Uint8Array): Uint8Array {
  return createHash('sha256').update(bytes).digest();
}

/**
 * vLLM's prefix-cache block hashing, for the simulator and for diagnosing engine events:
 * block_hash[i] = D(serialize((parent, tuple(tokens_i), extra_keys_i or None))), parent of block 0
 * = NONE_HASH = D(serialize(PYTHONHASHSEED)).
 */
export class EngineHasher {
  readonly algorithm: EngineHashAlgorithm;
  readonly blockSize: number;
  readonly pythonHashSeed: string | null;
  readonly hashFormat: EngineHashFormat;
  readonly lookahead: number;
  /** NONE_HASH as a full digest (the 64-bit algorithm uses its last 8 bytes as an integer). */
  readonly noneHash: Uint8Array;

  private readonly serialize: Serialize;
  private readonly digest: Digest;
  private readonly chainsIntegers: boolean;

  constructor(config: EngineHashConfig) {
    if (!isEngineHashAlgorithm(config.algorithm)) {
      throw new BlockKeysError('INVALID_ALGORITHM', `unknown engine hash algorithm ${JSON.stringify(config.algorithm)}; expected one of ${ENGINE_HASH_ALGORITHMS.join(', ')}`);
    }
    if (!Number.isInteger(config.blockSize) || config.blockSize <= 0) {
      throw new BlockKeysError('INVALID_BLOCK_SIZE', `blockSize must be a positive integer, got ${String(config.blockSize)}`);
    }
    if (config.pythonHashSeed !== null && typeof config.pythonHashSeed !== 'string') {
      throw new BlockKeysError('INVALID_SEED', 'pythonHashSeed must be a string or null');
    }
    const format = config.hashFormat ?? 'tagged';
    if (!ENGINE_HASH_FORMATS.includes(format)) throw new BlockKeysError('INVALID_ALGORITHM', `hashFormat must be tagged or untagged, got ${JSON.stringify(format)}`);
    if (format === 'tagged' && config.algorithm === 'sha256_cbor_64bit') {
      throw new BlockKeysError('INVALID_ALGORITHM', 'sha256_cbor_64bit existed only in vLLM 0.10.0–0.10.1: use hashFormat "untagged" for it');
    }
    const lookahead = config.numHashLookaheadTokens ?? 0;
    if (!Number.isInteger(lookahead) || lookahead < 0) throw new BlockKeysError('INVALID_EXTRAS', `numHashLookaheadTokens must be an integer >= 0, got ${String(lookahead)}`);
    this.algorithm = config.algorithm;
    this.blockSize = config.blockSize;
    this.pythonHashSeed = config.pythonHashSeed;
    this.hashFormat = format;
    this.lookahead = lookahead;
    const usesPickle = this.algorithm === 'sha256' || this.algorithm === 'xxhash';
    if (usesPickle) {
      const pickler = new PickleWriter();
      this.serialize = (v) => pickler.dumps(v);
    } else {
      const cbor = new CborWriter(1024);
      this.serialize = (v) => {
        cbor.reset();
        cbor.value(v);
        return cbor.buf.subarray(0, cbor.pos);
      };
    }
    this.digest = this.algorithm === 'xxhash' || this.algorithm === 'xxhash_cbor' ? xxh3_128 : sha256;
    this.chainsIntegers = this.algorithm === 'sha256_cbor_64bit';
    const seed = config.pythonHashSeed ?? (format === 'tagged' && this.algorithm.startsWith('sha256') ? VLLM_DEFAULT_NONE_HASH_SEED : null);
    this.noneHash = seed === null ? randomBytes(this.digest(new Uint8Array(0)).length) : this.digest(this.serialize(seed));
  }

  /** Whether NONE_HASH is random (PYTHONHASHSEED unset where vLLM then draws one): nothing is reproducible. */
  get randomSeed(): boolean {
    return this.pythonHashSeed === null && !(this.hashFormat === 'tagged' && this.algorithm.startsWith('sha256'));
  }

  /** The bytes D hashes for one block (vLLM's hash input, for diagnostics and tests). */
  serializedBlockInput(parent: Uint8Array | null, tokens: ArrayLike<number>, start: number, end: number, extraKeys: readonly PyValue[] | null): Uint8Array {
    const tokenTuple: number[] = [];
    for (let i = start; i < end; i++) tokenTuple.push(tokens[i]!);
    return this.serialize([this.chainValue(parent ?? this.noneHash), tokenTuple, extraKeys]).slice();
  }

  /**
   * What block `blockIndex`'s hash covers besides its parent and tokens: the extra keys (tagged or
   * not) over the block — over the block and its lookahead tokens with lookahead, then wrapped as
   * `(E, next tokens…)`. `tokens` are the prompt's (lookahead reads past the block).
   */
  hashExtrasForBlock(extras: EngineRequestExtras, blockIndex: number, tokens: ArrayLike<number>): PyValue | null {
    const start = blockIndex * this.blockSize;
    const windowEnd = start + this.blockSize + this.lookahead;
    const own = this.hashFormat === 'tagged' ? this.taggedKeys(extras, blockIndex, start, windowEnd) : this.extraKeysForBlock(extras, blockIndex);
    if (this.lookahead === 0) return own;
    const wrapped: PyValue[] = [own];
    for (let i = start + this.blockSize; i < windowEnd; i++) wrapped.push(tokens[i]!);
    return wrapped;
  }

  private taggedKeys(extras: EngineRequestExtras, blockIndex: number, start: number, end: number): PyValue[] | null {
    const keys: PyValue[] = [];
    if (extras.loraName) keys.push(['lora', extras.loraName, extras.loraPath ?? null]);
    for (const item of extras.multimodal ?? []) {
      if (item.offset < end && item.offset + item.length > start) keys.push(['mm', item.identifier, item.offset - start]);
    }
    if (blockIndex === 0 && extras.cacheSalt) keys.push(['cache_salt', extras.cacheSalt]);
    const embeds = this.embedsDigest(extras, blockIndex, start, end);
    if (embeds) keys.push(['prompt_embeds', embeds]);
    return keys.length > 0 ? keys : null;
  }

  private embedsDigest(extras: EngineRequestExtras, blockIndex: number, start: number, end: number): Uint8Array | null {
    const given = extras.promptEmbedsDigests?.[blockIndex];
    if (given) return given;
    const rows = extras.promptEmbedsRows;
    if (!rows || rows.length === 0) return null;
    const h = createHash('sha256');
    for (let i = start; i < Math.min(end, rows.length); i++) h.update(rows[i]!);
    return new Uint8Array(h.digest());
  }

  /**
   * vLLM's extra keys for block `blockIndex` as its events carry them (and as vLLM ≤ 0.32 hashed
   * them), in its order: LoRA name, multimodal `(identifier, offset)`, cache salt, prompt-embeds digest.
   */
  extraKeysForBlock(extras: EngineRequestExtras, blockIndex: number): PyValue[] | null {
    const keys: PyValue[] = [];
    if (this.chainsIntegers) {
      if (extras.loraIntId !== undefined && extras.loraIntId !== null) keys.push(extras.loraIntId);
    } else if (extras.loraName !== undefined && extras.loraName !== null) {
      keys.push(extras.loraName);
    }
    const start = blockIndex * this.blockSize;
    const end = start + this.blockSize;
    // Items are expected in placeholder order (hashBlocks sorts them), as vLLM keeps mm_features.
    for (const item of extras.multimodal ?? []) {
      if (item.offset < end && item.offset + item.length > start) keys.push([item.identifier, item.offset - start]);
    }
    if (blockIndex === 0 && extras.cacheSalt) keys.push(extras.cacheSalt);
    const embeds = this.embedsDigest(extras, blockIndex, start, end);
    if (embeds) keys.push(embeds);
    return keys.length > 0 ? keys : null;
  }

  /**
   * Hashes the full blocks of `tokens` from block `fromBlock` on, chaining from `parent` (the
   * previous block's digest; null = NONE_HASH). Token indices are absolute, so a decode step can
   * hash only its newly completed blocks.
   */
  hashBlocks(tokens: ArrayLike<number>, extras: EngineRequestExtras = {}, fromBlock = 0, parent: Uint8Array | null = null): EngineBlockHashes {
    this.checkExtras(extras);
    const normalized: EngineRequestExtras = extras.multimodal ? { ...extras, multimodal: sortPlaceholders(extras.multimodal) } : extras;
    // With lookahead, a block is hashed only once its lookahead tokens exist.
    const total = Math.floor(Math.max(0, tokens.length - this.lookahead) / this.blockSize);
    const count = Math.max(0, total - fromBlock);
    const digests: Uint8Array[] = new Array<Uint8Array>(count);
    const blockHashes = new BigUint64Array(count);
    let prev = parent ?? this.noneHash;
    const tokenTuple: number[] = new Array<number>(this.blockSize);
    for (let k = 0; k < count; k++) {
      const b = fromBlock + k;
      const base = b * this.blockSize;
      for (let i = 0; i < this.blockSize; i++) tokenTuple[i] = tokens[base + i]!;
      const input: PyValue = [this.chainValue(prev), tokenTuple, this.hashExtrasForBlock(normalized, b, tokens)];
      const d = this.digest(this.serialize(input));
      digests[k] = d;
      blockHashes[k] = u64FromTrailingBytes(d);
      prev = d;
    }
    return { digests, blockHashes };
  }

  private chainValue(parent: Uint8Array): PyValue {
    // 0.10.0–0.10.1 chained the 64-bit int (a CBOR uint); later versions chain the full digest bytes.
    return this.chainsIntegers ? u64FromTrailingBytes(parent) : parent;
  }

  private checkExtras(extras: EngineRequestExtras): void {
    if (extras.multimodal) validatePlaceholders(extras.multimodal);
    if (this.chainsIntegers && extras.loraName && (extras.loraIntId === undefined || extras.loraIntId === null)) {
      throw new BlockKeysError('INVALID_EXTRAS', 'sha256_cbor_64bit (vLLM 0.10.0–0.10.1) keys LoRA adapters by integer id: give loraIntId');
    }
    if (!this.chainsIntegers && extras.loraIntId != null && !extras.loraName) {
      throw new BlockKeysError('INVALID_EXTRAS', `${this.algorithm} keys LoRA adapters by name: give loraName`);
    }
    if (this.hashFormat === 'tagged' && extras.loraName && !extras.loraPath) {
      throw new BlockKeysError('INVALID_EXTRAS', 'tagged hashes (vLLM >= 0.33) include the LoRA adapter\'s path: give loraPath (or hashFormat "untagged")');
    }
  }
}

/** The 64-bit value an engine publishes for a digest (last 8 bytes, big-endian). */
export function wireHashOf(digest: Uint8Array): bigint {
  return u64FromTrailingBytes(digest);
}
