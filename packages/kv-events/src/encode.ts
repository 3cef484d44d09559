import { EventEncodeError } from './errors.js';
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
    default:
      w.nil();
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

const STORED_KEYS = ['', 'block_hashes', 'parent_block_hash', 'token_ids', 'block_size', 'lora_id', 'medium', 'lora_name', 'extra_keys', 'group_idx', 'kv_cache_spec_kind', 'kv_cache_spec_sliding_window'];
/** Struct fields with a default: msgspec omits them from maps when they hold it (None). */
const STORED_FIRST_DEFAULTED = 8;

function storedDefaultedValue(ev: BlockStored, position: number): unknown {
  switch (position) {
    case 8:
      return ev.extraKeys;
    case 9:
      return ev.groupIdx;
    case 10:
      return ev.kvCacheSpecKind;
    default:
      return ev.kvCacheSpecSlidingWindow;
  }
}

function writeStored(w: MsgpackWriter, ev: BlockStored, encoding: EventEncoding): void {
  if (encoding.layout === 'array') {
    const length = Math.max(5, encoding.length);
    w.arrayHead(length);
    w.str('BlockStored');
    for (let p = 1; p < length; p++) writeStoredField(w, ev, p);
    return;
  }
  let entries = STORED_FIRST_DEFAULTED;
  for (let p = STORED_FIRST_DEFAULTED; p < STORED_KEYS.length; p++) if (storedDefaultedValue(ev, p) !== null) entries++;
  w.mapHead(entries);
  w.str('type');
  w.str('BlockStored');
  for (let p = 1; p < STORED_KEYS.length; p++) {
    if (p >= STORED_FIRST_DEFAULTED && storedDefaultedValue(ev, p) === null) continue;
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
    for (let p = 4; p < length; p++) w.nil();
    return;
  }
  w.mapHead(ev.groupIdx === null ? 3 : 4);
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
}

function encodingFor(ev: KvEvent, layout: 'array' | 'map' | undefined): EventEncoding {
  if (layout === 'map') return { layout: 'map' };
  if (layout === 'array') return { layout: 'array', length: LATEST_ARRAY_LENGTH[ev.type] };
  return ev.encoding ?? { layout: 'array', length: LATEST_ARRAY_LENGTH[ev.type] };
}

export function writeEvent(w: MsgpackWriter, ev: KvEvent, layout?: 'array' | 'map'): void {
  const encoding = encodingFor(ev, layout);
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
    writeEvents(w, batch.events, options.layout);
    w.str('data_parallel_rank');
    nullableInt(w, batch.dataParallelRank);
  } else {
    w.arrayHead(enc.length);
    w.float64(batch.ts);
    writeEvents(w, batch.events, options.layout);
    if (enc.length === 3) nullableInt(w, batch.dataParallelRank);
  }
  return options.writer ? w.buf.subarray(0, w.pos) : w.toBytes();
}

function writeEvents(w: MsgpackWriter, events: readonly KvEvent[], layout: 'array' | 'map' | undefined): void {
  w.arrayHead(events.length);
  for (const ev of events) writeEvent(w, ev, layout);
}
