import { EventEncodeError } from './errors.js';
import { CACHE_SALT_FIELD, STORED_FIELDS } from './fields.js';
import { MsgpackWriter } from './msgpack-writer.js';
import type { BlockRemoved, BlockStored, EventBatch, EventEncoding, KvEvent } from './types.js';

/** vLLM's current array struct sizes (tag included): BlockStored 12, BlockRemoved 4, AllBlocksCleared 1. */
export const LATEST_ARRAY_LENGTH = { BlockStored: 12, BlockRemoved: 4, AllBlocksCleared: 1 } as const;

export interface EncodeOptions {
  /**
   * Layout for every event, overriding each event's own `encoding`: 'array' (vLLM ≤ 0.23, at
   * the latest struct size), or 'map' (vLLM ≥ 0.26). Events without an encoding default to array.
   */
  layout?: 'array' | 'map';
  /** With layout 'map': whose struct (vLLM's or SGLang's) and msgspec's head width (vLLM 0.34: wide). */
  map?: { dialect?: 'vllm' | 'sglang'; wide?: boolean };
  /** Reuse this writer (its buffer is reset); the result is then a view valid until its next use. */
  writer?: MsgpackWriter;
}

function writeHashes(w: MsgpackWriter, hashes: BigUint64Array, digests: readonly Uint8Array[] | undefined, signed: boolean | undefined): void {
  const n = hashes.length;
  if (digests !== undefined && digests.length !== n) {
    throw new EventEncodeError('BAD_EVENT', `blockHashDigests has ${digests.length} entries for ${n} block hashes`);
  }
  w.arrayHead(n);
  const words = new Uint32Array(hashes.buffer, hashes.byteOffset, n * 2);
  for (let i = 0; i < n; i++) {
    if (digests !== undefined) w.bin(digests[i]!);
    else if (signed && words[2 * i + 1]! >= 0x80000000) w.int(BigInt.asIntN(64, hashes[i]!));
    else w.uint64Words(words[2 * i]!, words[2 * i + 1]!);
  }
}

function writeHash(w: MsgpackWriter, value: bigint, digest: Uint8Array | undefined, signed: boolean | undefined): void {
  if (digest !== undefined) w.bin(digest);
  else if (signed && value >= 1n << 63n) w.int(BigInt.asIntN(64, value));
  else w.int(value);
}

function writeStoredField(w: MsgpackWriter, ev: BlockStored, position: number): void {
  switch (position) {
    case 1:
      writeHashes(w, ev.blockHashes, ev.blockHashDigests, ev.signedHashes);
      return;
    case 2:
      if (ev.parentBlockHash === null) w.nil();
      else writeHash(w, ev.parentBlockHash, ev.parentBlockHashDigest, ev.signedHashes);
      return;
    case 3:
      w.uint32Array(ev.tokenIds);
      return;
    case 4:
      w.int(ev.blockSize);
      return;
    case 5:
      nullableInt(w, ev.loraId);
      return;
    case 6:
      nullableStr(w, ev.medium);
      return;
    case 7:
      nullableStr(w, ev.loraName);
      return;
    case 8:
      if (ev.extraKeys === null) w.nil();
      else {
        w.arrayHead(ev.extraKeys.length);
        for (const keys of ev.extraKeys) w.value(keys);
      }
      return;
    case 9:
      nullableInt(w, ev.groupIdx);
      return;
    case 10:
      nullableStr(w, ev.kvCacheSpecKind);
      return;
    case 11:
      nullableInt(w, ev.kvCacheSpecSlidingWindow);
      return;
    case 12:
      nullableStr(w, ev.locality ?? null);
      return;
    case 13:
      nullableStr(w, ev.ownership ?? null);
      return;
    case 14:
      nullableStr(w, ev.sessionId ?? null);
      return;
    case 15:
      writeLookahead(w, ev.lookaheadTokenIds ?? null);
      return;
    case SGLANG_CACHE_SALT:
      nullableStr(w, ev.cacheSalt ?? null);
      return;
    default:
      w.nil();
  }
}

function writeLookahead(w: MsgpackWriter, lookahead: readonly (readonly number[] | null)[] | null): void {
  if (lookahead === null) {
    w.nil();
    return;
  }
  w.arrayHead(lookahead.length);
  for (const tokens of lookahead) {
    if (tokens === null) w.nil();
    else w.uint32Array(Uint32Array.from(tokens));
  }
}

function nullableInt(w: MsgpackWriter, v: number | null): void {
  if (v === null) w.nil();
  else w.int(v);
}

function nullableStr(w: MsgpackWriter, v: string | null): void {
  if (v === null) w.nil();
  else w.str(v);
}

const STORED_KEYS: readonly string[] = [...STORED_FIELDS, CACHE_SALT_FIELD];
const SGLANG_CACHE_SALT = STORED_FIELDS.length;
/** vLLM's struct fields with a default: msgspec omits them from maps when they hold it (None). */
const STORED_FIRST_DEFAULTED = 8;
const VLLM_MAP_FIELDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
/** SGLang's BlockStored, in its field order: medium has no default, cache_salt, session_id and lora_name do. */
const SGLANG_MAP_FIELDS = [1, 2, 3, 4, 5, 6, SGLANG_CACHE_SALT, 14, 7];
const SGLANG_FIRST_DEFAULTED = 6;

function storedDefaultedValue(ev: BlockStored, position: number): unknown {
  switch (position) {
    case 7:
      return ev.loraName;
    case 8:
      return ev.extraKeys;
    case 9:
      return ev.groupIdx;
    case 10:
      return ev.kvCacheSpecKind;
    case 11:
      return ev.kvCacheSpecSlidingWindow;
    case 12:
      return ev.locality ?? null;
    case 13:
      return ev.ownership ?? null;
    case 14:
      return ev.sessionId ?? null;
    case 15:
      return ev.lookaheadTokenIds ?? null;
    default:
      return ev.cacheSalt ?? null;
  }
}

function writeStored(w: MsgpackWriter, ev: BlockStored, encoding: EventEncoding): void {
  if (encoding.layout === 'array') {
    const length = Math.max(5, encoding.length);
    w.arrayHead(length);
    w.str('BlockStored');
    for (let p = 1; p < length; p++) writeStoredField(w, ev, p < SGLANG_CACHE_SALT ? p : -1);
    return;
  }
  const sglang = encoding.dialect === 'sglang';
  const fields = sglang ? SGLANG_MAP_FIELDS : VLLM_MAP_FIELDS;
  const firstDefaulted = sglang ? SGLANG_FIRST_DEFAULTED : STORED_FIRST_DEFAULTED - 1;
  const written = fields.filter((p, i) => i < firstDefaulted || storedDefaultedValue(ev, p) !== null);
  w.mapHead(written.length + 1, encoding.wide === true);
  w.str('type');
  w.str('BlockStored');
  for (const p of written) {
    w.str(STORED_KEYS[p]!);
    writeStoredField(w, ev, p);
  }
}

function writeRemoved(w: MsgpackWriter, ev: BlockRemoved, encoding: EventEncoding): void {
  if (encoding.layout === 'array') {
    const length = Math.max(2, encoding.length);
    w.arrayHead(length);
    w.str('BlockRemoved');
    writeHashes(w, ev.blockHashes, ev.blockHashDigests, ev.signedHashes);
    if (length > 2) nullableStr(w, ev.medium);
    if (length > 3) nullableInt(w, ev.groupIdx);
    if (length > 4) nullableStr(w, ev.locality ?? null);
    if (length > 5) nullableStr(w, ev.ownership ?? null);
    for (let p = 6; p < length; p++) w.nil();
    return;
  }
  const locality = ev.locality ?? null;
  const ownership = ev.ownership ?? null;
  w.mapHead(3 + (ev.groupIdx === null ? 0 : 1) + (locality === null ? 0 : 1) + (ownership === null ? 0 : 1));
  w.str('type');
  w.str('BlockRemoved');
  w.str('block_hashes');
  writeHashes(w, ev.blockHashes, ev.blockHashDigests, ev.signedHashes);
  w.str('medium');
  nullableStr(w, ev.medium);
  if (ev.groupIdx !== null) {
    w.str('group_idx');
    w.int(ev.groupIdx);
  }
  if (locality !== null) {
    w.str('locality');
    w.str(locality);
  }
  if (ownership !== null) {
    w.str('ownership');
    w.str(ownership);
  }
}

function encodingFor(ev: KvEvent, layout: 'array' | 'map' | undefined, map?: EncodeOptions['map']): EventEncoding {
  if (layout === 'map') return { layout: 'map', ...(map?.dialect === 'sglang' ? { dialect: 'sglang' as const } : {}), ...(map?.wide === true ? { wide: true } : {}) };
  if (layout === 'array') return { layout: 'array', length: LATEST_ARRAY_LENGTH[ev.type] };
  return ev.encoding ?? { layout: 'array', length: LATEST_ARRAY_LENGTH[ev.type] };
}

export function writeEvent(w: MsgpackWriter, ev: KvEvent, layout?: 'array' | 'map', map?: EncodeOptions['map']): void {
  const encoding = encodingFor(ev, layout, map);
  switch (ev.type) {
    case 'BlockStored':
      writeStored(w, ev, encoding);
      return;
    case 'BlockRemoved':
      writeRemoved(w, ev, encoding);
      return;
    case 'AllBlocksCleared':
      if (encoding.layout === 'map') {
        w.mapHead(1);
        w.str('type');
        w.str('AllBlocksCleared');
      } else {
        w.arrayHead(Math.max(1, encoding.length));
        w.str('AllBlocksCleared');
        for (let p = 1; p < encoding.length; p++) w.nil();
      }
      return;
    default: {
      const unknown: { type?: unknown } = ev;
      throw new EventEncodeError('BAD_EVENT', `cannot encode event type ${JSON.stringify(unknown.type)}`);
    }
  }
}

/**
 * Encodes an EventBatch as vLLM's publisher does: `[ts float64, events, data_parallel_rank]` (two
 * elements when the batch says so, as vLLM 0.9 sent), events in each one's own layout unless
 * `options.layout` forces one. Decoding a vLLM payload and encoding it again gives the same bytes.
 */
export function encodeEventBatch(batch: EventBatch, options: EncodeOptions = {}): Uint8Array {
  const w = options.writer ?? new MsgpackWriter();
  w.reset();
  const enc = batch.encoding ?? { layout: 'array', length: 3 };
  if (enc.layout === 'map') {
    w.mapHead(3);
    w.str('ts');
    w.float64(batch.ts);
    w.str('events');
    writeEvents(w, batch.events, options);
    w.str('data_parallel_rank');
    nullableInt(w, batch.dataParallelRank);
  } else {
    w.arrayHead(enc.length);
    w.float64(batch.ts);
    writeEvents(w, batch.events, options);
    if (enc.length === 3) nullableInt(w, batch.dataParallelRank);
  }
  return options.writer ? w.buf.subarray(0, w.pos) : w.toBytes();
}

function writeEvents(w: MsgpackWriter, events: readonly KvEvent[], options: EncodeOptions): void {
  w.arrayHead(events.length);
  for (const ev of events) writeEvent(w, ev, options.layout, options.map);
}
