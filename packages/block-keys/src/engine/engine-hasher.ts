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

export function isEngineHashAlgorithm(value: unknown): value is EngineHashAlgorithm {
  return typeof value === 'string' && (ENGINE_HASH_ALGORITHMS as readonly string[]).includes(value);
}

export interface EngineHashConfig {
  algorithm: EngineHashAlgorithm;
  /** PYTHONHASHSEED as a string; null means unset, which makes NONE_HASH random (nothing reproducible). */
  pythonHashSeed: string | null;
  blockSize: number;
}

/** What in a request, besides its tokens, changes vLLM's block hashes. */
export interface EngineRequestExtras {
  /** LoRA adapter name (every block; all algorithms but sha256_cbor_64bit). */
  loraName?: string | null;
  /** LoRA integer id: what sha256_cbor_64bit (vLLM 0.10.0–0.10.1) keyed adapters by. */
  loraIntId?: number | null;
  /** Block 0 only, and only when non-empty. */
  cacheSalt?: string | null;
  multimodal?: readonly MultimodalPlaceholder[] | null;
  /** Per-block SHA-256 digests of prompt embeddings, when the request has them. */
  promptEmbedsDigests?: readonly (Uint8Array | null)[] | null;
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
    this.algorithm = config.algorithm;
    this.blockSize = config.blockSize;
    this.pythonHashSeed = config.pythonHashSeed;
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
    this.noneHash =
      config.pythonHashSeed === null ? randomBytes(this.digest(new Uint8Array(0)).length) : this.digest(this.serialize(config.pythonHashSeed));
  }

  /** The bytes D hashes for one block (vLLM's hash input, for diagnostics and tests). */
  serializedBlockInput(parent: Uint8Array | null, tokens: ArrayLike<number>, start: number, end: number, extraKeys: readonly PyValue[] | null): Uint8Array {
    const tokenTuple: number[] = [];
    for (let i = start; i < end; i++) tokenTuple.push(tokens[i]!);
    return this.serialize([this.chainValue(parent ?? this.noneHash), tokenTuple, extraKeys]).slice();
  }

  /** vLLM's extra keys for block `blockIndex`, in its order: LoRA, multimodal, cache salt, prompt embeds. */
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
    const embeds = extras.promptEmbedsDigests?.[blockIndex];
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
    const total = Math.floor(tokens.length / this.blockSize);
    const count = Math.max(0, total - fromBlock);
    const digests: Uint8Array[] = new Array<Uint8Array>(count);
    const blockHashes = new BigUint64Array(count);
    let prev = parent ?? this.noneHash;
    const tokenTuple: number[] = new Array<number>(this.blockSize);
    for (let k = 0; k < count; k++) {
      const b = fromBlock + k;
      const base = b * this.blockSize;
      for (let i = 0; i < this.blockSize; i++) tokenTuple[i] = tokens[base + i]!;
      const input: PyValue = [this.chainValue(prev), tokenTuple, this.extraKeysForBlock(normalized, b)];
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
  }
}

/** The 64-bit value an engine publishes for a digest (last 8 bytes, big-endian). */
export function wireHashOf(digest: Uint8Array): bigint {
  return u64FromTrailingBytes(digest);
}
