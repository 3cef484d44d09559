import { EventDecodeError } from './errors.js';
import { CACHE_SALT_FIELD, STORED_FIELDS } from './fields.js';
import { FieldTable, MsgpackReader, WrongType, type HashForm } from './msgpack-reader.js';
import { allocHashes, allocTokens } from './slab.js';
import type { BlockRemoved, BlockStored, DecodedBatch, EventBatch, KvEvent, MsgpackValue, SkippedEvent } from './types.js';

/** SGLang's field, a map key only (its positional layout is not vLLM's). */
const CACHE_SALT_ID = STORED_FIELDS.length;
const LORA_NAME_ID = 7;
/** Map keys to field ids; "type" is 0 in every table. */
const STORED_KEYS = new FieldTable(['type', ...STORED_FIELDS.slice(1), CACHE_SALT_FIELD]);
/** Positions 1–4 (hashes, parent, tokens, block size) are present in every vLLM version. */
const STORED_MIN_ARRAY_LENGTH = 5;

const REMOVED_FIELD_COUNT = 6;
const REMOVED_KEYS = new FieldTable(['type', 'block_hashes', 'medium', 'group_idx', 'locality', 'ownership']);

class SkipEvent extends WrongType {
  constructor(
    reason: string,
    readonly tag?: string,
  ) {
    super(reason);
  }
}

// Zero-length typed arrays cannot be mutated, so every event may share these defaults.
const NO_HASHES = new BigUint64Array(0);
const NO_TOKENS = new Uint32Array(0);

function newStored(): BlockStored {
  return {
    type: 'BlockStored',
    blockHashes: NO_HASHES,
    parentBlockHash: null,
    tokenIds: NO_TOKENS,
    blockSize: 0,
    loraId: null,
    medium: null,
    loraName: null,
    extraKeys: null,
    groupIdx: null,
    kvCacheSpecKind: null,
    kvCacheSpecSlidingWindow: null,
  };
}

interface HashList {
  hashes: BigUint64Array;
  digests?: Uint8Array[];
  signed: boolean;
}

function readHashes(r: MsgpackReader, what: string): HashList {
  const n = r.arrayHead(what);
  const [hashes, words] = allocHashes(n);
  let digests: Uint8Array[] | undefined;
  let signed = false;
  for (let i = 0; i < n; i++) {
    const form: HashForm = r.hashInto(words, i, `${what}[${i}]`);
    if (form === 'bytes') {
      if (digests === undefined) digests = Array.from({ length: n }, (_, k) => (k < i ? beBytes(hashes[k]!) : new Uint8Array(0)));
      digests[i] = r.lastHashBytes.slice();
    } else {
      if (form === 'negative') signed = true;
      if (digests !== undefined) digests[i] = beBytes(hashes[i]!);
    }
  }
  return digests === undefined ? { hashes, signed } : { hashes, digests, signed };
}

function beBytes(v: bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, v);
  return out;
}

const parentWords = new Uint32Array(2);
const parentValue = new BigUint64Array(parentWords.buffer);

function readStoredField(r: MsgpackReader, ev: BlockStored, id: number): void {
  switch (id) {
    case 1: {
      const list = readHashes(r, 'block_hashes');
      ev.blockHashes = list.hashes;
      if (list.digests) ev.blockHashDigests = list.digests;
      if (list.signed) ev.signedHashes = true;
      return;
    }
    case 2: {
      if (r.tryNil()) {
        ev.parentBlockHash = null;
        return;
      }
      const form = r.hashInto(parentWords, 0, 'parent_block_hash');
      ev.parentBlockHash = parentValue[0]!;
      if (form === 'bytes') ev.parentBlockHashDigest = r.lastHashBytes.slice();
      if (form === 'negative') ev.signedHashes = true;
      return;
    }
    case 3: {
      const n = r.arrayHead('token_ids');
      if (n > 0 && r.peekByte() >= 0x90 && r.peekByte() <= 0x9f) {
        // SGLang's EAGLE bigram keys: [a, b] pairs. Kept out of tokenIds (they are not a prompt's tokens).
        for (let i = 0; i < n; i++) r.skip();
        ev.tokenIds = NO_TOKENS;
        ev.bigramTokens = true;
        return;
      }
      const tokens = allocTokens(n);
      r.tokensInto(tokens, n, 'token_ids');
      ev.tokenIds = tokens;
      return;
    }
    case 4: {
      const size = r.intOrNil('block_size') ?? 0;
      if (size < 0) throw new WrongType(`block_size ${size} is negative`);
      ev.blockSize = size;
      return;
    }
    case 5:
      // Deprecated upstream: never let a malformed lora_id cost the event.
      ev.loraId = lenientInt(r);
      return;
    case 6:
      ev.medium = r.stringOrNil('medium');
      return;
    case 7:
      ev.loraName = r.stringOrNil('lora_name');
      return;
    case 8:
      ev.extraKeys = readExtraKeys(r);
      return;
    case 9:
      ev.groupIdx = r.intOrNil('group_idx');
      return;
    case 10:
      ev.kvCacheSpecKind = r.stringOrNil('kv_cache_spec_kind');
      return;
    case 11:
      ev.kvCacheSpecSlidingWindow = r.intOrNil('kv_cache_spec_sliding_window');
      return;
    case 12:
      ev.locality = r.stringOrNil('locality');
      return;
    case 13:
      ev.ownership = r.stringOrNil('ownership');
      return;
    case 14:
      ev.sessionId = r.stringOrNil('session_id');
      return;
    case 15:
      ev.lookaheadTokenIds = readLookahead(r);
      return;
    case CACHE_SALT_ID:
      ev.cacheSalt = r.stringOrNil('cache_salt');
      return;
    default:
      r.skip();
  }
}

/** Per block, the lookahead tokens its hash covers (or nil). */
function readLookahead(r: MsgpackReader): (number[] | null)[] | null {
  if (r.tryNil()) return null;
  const n = r.arrayHead('lookahead_token_ids');
  const out: (number[] | null)[] = new Array<number[] | null>(n);
  for (let i = 0; i < n; i++) {
    if (r.tryNil()) {
      out[i] = null;
      continue;
    }
    const m = r.arrayHead(`lookahead_token_ids[${i}]`);
    const tokens = new Uint32Array(m);
    r.tokensInto(tokens, m, `lookahead_token_ids[${i}]`);
    out[i] = Array.from(tokens);
  }
  return out;
}

function lenientInt(r: MsgpackReader): number | null {
  const v = r.value();
  return typeof v === 'number' && Number.isInteger(v) ? v : null;
}

function readExtraKeys(r: MsgpackReader): (MsgpackValue[] | null)[] | null {
  if (r.tryNil()) return null;
  const n = r.arrayHead('extra_keys');
  const out: (MsgpackValue[] | null)[] = new Array<MsgpackValue[] | null>(n);
  for (let i = 0; i < n; i++) {
    if (r.tryNil()) {
      out[i] = null;
      continue;
    }
    const inner = r.value();
    if (!Array.isArray(inner)) throw new WrongType(`extra_keys[${i}] is neither an array nor nil`);
    out[i] = inner;
  }
  return out;
}

function readRemovedField(r: MsgpackReader, ev: BlockRemoved, id: number): void {
  switch (id) {
    case 1: {
      const list = readHashes(r, 'block_hashes');
      ev.blockHashes = list.hashes;
      if (list.digests) ev.blockHashDigests = list.digests;
      if (list.signed) ev.signedHashes = true;
      return;
    }
    case 2:
      ev.medium = r.stringOrNil('medium');
      return;
    case 3:
      ev.groupIdx = r.intOrNil('group_idx');
      return;
    case 4:
      ev.locality = r.stringOrNil('locality');
      return;
    case 5:
      ev.ownership = r.stringOrNil('ownership');
      return;
    default:
      r.skip();
  }
}

function newRemoved(): BlockRemoved {
  return { type: 'BlockRemoved', blockHashes: NO_HASHES, medium: null, groupIdx: null };
}

function decodeArrayEvent(r: MsgpackReader, length: number): KvEvent {
  if (length === 0) throw new SkipEvent('event is an empty array');
  const tag = isStringNext(r) ? r.string('event tag') : notATag();
  currentTag = tag;
  switch (tag) {
    case 'BlockStored': {
      if (length < STORED_MIN_ARRAY_LENGTH) {
        throw new SkipEvent(`BlockStored array has ${length} elements; at least ${STORED_MIN_ARRAY_LENGTH} expected`, tag);
      }
      const ev = newStored();
      for (let p = 1; p < length; p++) readStoredField(r, ev, p < CACHE_SALT_ID ? p : -1);
      ev.encoding = { layout: 'array', length };
      return ev;
    }
    case 'BlockRemoved': {
      if (length < 2) throw new SkipEvent('BlockRemoved array has no block_hashes', tag);
      const ev = newRemoved();
      for (let p = 1; p < length; p++) readRemovedField(r, ev, p < REMOVED_FIELD_COUNT ? p : -1);
      ev.encoding = { layout: 'array', length };
      return ev;
    }
    case 'AllBlocksCleared':
      for (let p = 1; p < length; p++) r.skip();
      return { type: 'AllBlocksCleared', encoding: { layout: 'array', length } };
    default:
      throw new SkipEvent(`unknown event type ${JSON.stringify(tag)}`, tag);
  }
}

function isStringNext(r: MsgpackReader): boolean {
  const b = r.peekByte();
  return (b >= 0xa0 && b <= 0xbf) || b === 0xd9 || b === 0xda || b === 0xdb;
}

function notATag(): never {
  throw new SkipEvent('event tag (element 0) is not a string');
}

/** The tag of the event being decoded, so a field error can say which kind of event it spoiled. */
let currentTag: string | undefined;

function decodeMapEvent(r: MsgpackReader, entries: number, wide: boolean): KvEvent {
  const ev = decodeMapEventFields(r, entries);
  if (wide && ev.encoding?.layout === 'map' && entries <= 15) ev.encoding.wide = true;
  return ev;
}

function decodeMapEventFields(r: MsgpackReader, entries: number): KvEvent {
  // msgspec writes the "type" tag first; when it is, fields are decoded in one pass.
  const first = r.pos;
  let tag: string | undefined;
  if (entries > 0) {
    const key = r.mapKey();
    if (key === 'type') tag = currentTag = r.string('type');
    else r.pos = first;
  }
  if (tag === undefined) {
    // Tag elsewhere: find it, then decode the fields from the start.
    for (let i = 0; i < entries; i++) {
      const key = r.mapKey();
      if (key === 'type') {
        tag = currentTag = r.string('type');
        break;
      }
      r.skip();
    }
    if (tag === undefined) throw new SkipEvent('map event has no "type" key');
    r.pos = first;
    return decodeMapFields(r, entries, tag);
  }
  return decodeMapFields(r, entries - 1, tag);
}

/**
 * Reads `entries` map entries into `ev` by field id (the "type" entry, id 0, is skipped wherever
 * it is). Both event kinds require block_hashes (id 1).
 */
function readMapFields<E extends BlockStored | BlockRemoved>(
  r: MsgpackReader,
  entries: number,
  tag: string,
  table: FieldTable,
  ev: E,
  readField: (r: MsgpackReader, ev: E, id: number) => void,
): E {
  let sawHashes = false;
  let sawLoraName = false;
  let sawCacheSalt = false;
  for (let i = 0; i < entries; i++) {
    const id = r.fieldId(table);
    if (id === 0) {
      r.skip();
      continue;
    }
    if (id === 1) sawHashes = true;
    else if (id === LORA_NAME_ID) sawLoraName = true;
    else if (id === CACHE_SALT_ID) sawCacheSalt = true;
    readField(r, ev, id);
  }
  if (!sawHashes) throw new SkipEvent(`${tag} has no block_hashes`, tag);
  // vLLM always writes lora_name and has no cache_salt: without the one or with the other, SGLang wrote it.
  ev.encoding = ev.type === 'BlockStored' && (!sawLoraName || sawCacheSalt) ? { layout: 'map', dialect: 'sglang' } : { layout: 'map' };
  return ev;
}

function decodeMapFields(r: MsgpackReader, entries: number, tag: string): KvEvent {
  switch (tag) {
    case 'BlockStored':
      return readMapFields(r, entries, tag, STORED_KEYS, newStored(), readStoredField);
    case 'BlockRemoved':
      return readMapFields(r, entries, tag, REMOVED_KEYS, newRemoved(), readRemovedField);
    case 'AllBlocksCleared':
      for (let i = 0; i < entries; i++) {
        r.skip();
        r.skip();
      }
      return { type: 'AllBlocksCleared', encoding: { layout: 'map' } };
    default:
      throw new SkipEvent(`unknown event type ${JSON.stringify(tag)}`, tag);
  }
}

function decodeEvent(r: MsgpackReader): KvEvent {
  const arrayLength = r.tryArrayHead();
  if (arrayLength >= 0) return decodeArrayEvent(r, arrayLength);
  const wide = r.peekByte() === 0xde;
  const mapEntries = r.tryMapHead();
  if (mapEntries >= 0) return decodeMapEvent(r, mapEntries, wide);
  throw new SkipEvent('event is neither an array nor a map');
}

function readEvents(r: MsgpackReader, events: KvEvent[], skipped: SkippedEvent[]): void {
  const n = r.tryArrayHead();
  if (n < 0) throw new EventDecodeError('BAD_EVENTS', 'batch events is not an array', r.pos);
  for (let i = 0; i < n; i++) {
    const start = r.pos;
    currentTag = undefined;
    try {
      events.push(decodeEvent(r));
    } catch (err) {
      if (!(err instanceof WrongType)) throw err;
      // The event is well-formed msgpack but unusable: step over it and keep the rest.
      r.pos = start;
      r.skip();
      const tag = err instanceof SkipEvent ? err.tag : currentTag;
      const reason = err instanceof SkipEvent || tag === undefined ? err.reason : `${tag}: ${err.reason}`;
      const skip: SkippedEvent = { index: i, reason };
      if (tag !== undefined) skip.type = tag;
      skipped.push(skip);
    }
  }
}

function batchLevel<T>(code: 'BAD_TIMESTAMP' | 'BAD_RANK', r: MsgpackReader, read: () => T): T {
  const at = r.pos;
  try {
    return read();
  } catch (err) {
    if (err instanceof WrongType) throw new EventDecodeError(code, err.reason, at);
    throw err;
  }
}

/**
 * Decodes one ZeroMQ payload into an EventBatch. Accepts every layout vLLM, LMCache and SGLang
 * publish: a 2- or 3-element array batch (or, defensively, a map), array and map events mixed in
 * one batch, int or bytes hashes. Throws EventDecodeError when the payload is not a batch at all;
 * an unusable event is listed in `skipped` (index and reason) and every other event is returned.
 */
export function decodeEventBatch(payload: Uint8Array): DecodedBatch {
  if (payload.length === 0) throw new EventDecodeError('NOT_A_BATCH', 'empty payload');
  const r = new MsgpackReader(payload);
  const events: KvEvent[] = [];
  const skipped: SkippedEvent[] = [];
  let ts: number;
  let dataParallelRank: number | null = null;
  let encoding: EventBatch['encoding'];

  const length = r.tryArrayHead();
  if (length >= 0) {
    if (length < 2) throw new EventDecodeError('NOT_A_BATCH', `batch array has ${length} elements; expected [ts, events, data_parallel_rank?]`);
    ts = batchLevel('BAD_TIMESTAMP', r, () => r.number('batch ts'));
    readEvents(r, events, skipped);
    if (length >= 3) dataParallelRank = batchLevel('BAD_RANK', r, () => r.intOrNil('data_parallel_rank'));
    for (let i = 3; i < length; i++) r.skip();
    encoding = { layout: 'array', length: length === 2 ? 2 : 3 };
  } else {
    const entries = r.tryMapHead();
    if (entries < 0) throw new EventDecodeError('NOT_A_BATCH', `payload starts with 0x${payload[0]!.toString(16)}, not an array or map batch`, 0);
    let sawTs = false;
    let sawEvents = false;
    ts = 0;
    for (let i = 0; i < entries; i++) {
      const key = r.mapKey();
      if (key === 'ts') {
        ts = batchLevel('BAD_TIMESTAMP', r, () => r.number('batch ts'));
        sawTs = true;
      } else if (key === 'events') {
        readEvents(r, events, skipped);
        sawEvents = true;
      } else if (key === 'data_parallel_rank') {
        dataParallelRank = batchLevel('BAD_RANK', r, () => r.intOrNil('data_parallel_rank'));
      } else {
        r.skip();
      }
    }
    if (!sawTs || !sawEvents) throw new EventDecodeError('NOT_A_BATCH', 'map batch lacks "ts" or "events"');
    encoding = { layout: 'map' };
  }
  if (!r.atEnd()) throw new EventDecodeError('TRAILING_BYTES', `${r.remaining} bytes follow the batch`, r.pos);
  return { ts, events, dataParallelRank, skipped, encoding };
}
