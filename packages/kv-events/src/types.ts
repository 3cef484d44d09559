/** A generic msgpack value as kvix surfaces it: 64-bit integers beyond 2^53 become bigint. */
export type MsgpackValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | MsgpackValue[]
  | { [key: string]: MsgpackValue };

/**
 * How an event was (or should be) laid out on the wire. vLLM ≤ 0.23 sends positional arrays whose
 * length reveals the engine version; later versions send maps tagged by "type".
 */
export type EventEncoding =
  | { layout: 'array'; length: number }
  | {
      layout: 'map';
      dialect?: MapDialect;
      /**
       * A map16 head however few fields are written: msgspec sizes a struct's head by its field
       * count, and vLLM 0.34's BlockStored has 16 with the tag.
       */
      wide?: boolean;
    };

/**
 * Whose struct a map event follows: vLLM's (lora_name always written, then extra_keys … omitted
 * when nil) or SGLang's (medium then cache_salt, session_id, lora_name, the last three omitted when
 * nil; no extra_keys or groups). A map BlockStored without a lora_name key, or with a cache_salt
 * key, is SGLang's: vLLM always writes lora_name and has no cache_salt field.
 */
export type MapDialect = 'vllm' | 'sglang';

export interface BlockStored {
  type: 'BlockStored';
  /** Engine keys of the newly cached blocks, normalised to unsigned 64-bit. */
  blockHashes: BigUint64Array;
  /**
   * The raw digests, when the engine sent bytes (VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=0); the
   * encoder sends bytes when this is present. Index-aligned with blockHashes.
   */
  blockHashDigests?: readonly Uint8Array[];
  /** Engine key of the block before the first one; null (or 0 from some simulators) = chain root. */
  parentBlockHash: bigint | null;
  parentBlockHashDigest?: Uint8Array;
  /** Tokens of all blocks of this event, concatenated; empty for many offload-tier events. */
  tokenIds: Uint32Array;
  blockSize: number;
  /** Deprecated upstream; carried for fidelity only. */
  loraId: number | null;
  /** Tier exactly as sent ("GPU", "CPU", "cpu", …); null means GPU. See tierOfMedium. */
  medium: string | null;
  loraName: string | null;
  /** One entry per block: multimodal identifiers, cache salt (block 0), LoRA name, … */
  extraKeys: (MsgpackValue[] | null)[] | null;
  groupIdx: number | null;
  kvCacheSpecKind: string | null;
  kvCacheSpecSlidingWindow: number | null;
  /** vLLM ≥ 0.34: "LOCAL" or "REMOTE" (a copy the pod does not hold itself). Absent = not sent. */
  locality?: string | null;
  /** vLLM ≥ 0.34: id of a secondary tier's owner. */
  ownership?: string | null;
  /** vLLM ≥ 0.34 and SGLang: the request's session. */
  sessionId?: string | null;
  /**
   * vLLM ≥ 0.34 with EAGLE hash lookahead: per block, the tokens after it that its hash also
   * covers (not part of the block: request keys ignore them).
   */
  lookaheadTokenIds?: (number[] | null)[] | null;
  /** SGLang: the request's cache salt, on every event of a salted chain (vLLM puts it in extra_keys). */
  cacheSalt?: string | null;
  /**
   * SGLang's EAGLE bigram radix keys: token_ids came as [a, b] pairs (tokenIds is then empty; they
   * are not a prompt's tokens).
   */
  bigramTokens?: boolean;
  encoding?: EventEncoding;
  /** Set when the engine sent hashes as negative (signed int64) integers. */
  signedHashes?: boolean;
}

export interface BlockRemoved {
  type: 'BlockRemoved';
  blockHashes: BigUint64Array;
  blockHashDigests?: readonly Uint8Array[];
  medium: string | null;
  groupIdx: number | null;
  locality?: string | null;
  ownership?: string | null;
  encoding?: EventEncoding;
  signedHashes?: boolean;
}

export interface AllBlocksCleared {
  type: 'AllBlocksCleared';
  encoding?: EventEncoding;
}

export type KvEvent = BlockStored | BlockRemoved | AllBlocksCleared;
export type KvEventType = KvEvent['type'];

export interface EventBatch {
  /** Engine wall-clock time of the batch, in seconds since the epoch. */
  ts: number;
  events: KvEvent[];
  /** The publishing engine's data-parallel rank; null when absent (vLLM 0.9 sends none). */
  dataParallelRank: number | null;
  /** Layout of the batch itself: vLLM always sends an array, of 2 (v0.9) or 3 elements. */
  encoding?: { layout: 'array'; length: 2 | 3 } | { layout: 'map' };
}

/** An event of a batch that could not be used, with why. The rest of the batch is still returned. */
export interface SkippedEvent {
  index: number;
  reason: string;
  /** The event's tag, when it could be read. */
  type?: string;
}

export interface DecodedBatch extends EventBatch {
  skipped: SkippedEvent[];
}
