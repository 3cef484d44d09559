import { tierOfEvent } from './tier.js';
import type { DecodedBatch, KvEvent, MsgpackValue } from './types.js';

/** JSON-safe rendering of a msgpack value: bigints as decimal strings, bytes as {"bytes_hex": …}. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export function msgpackToJson(v: MsgpackValue): JsonValue {
  if (v === null || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string') return v;
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint8Array) return { bytes_hex: Buffer.from(v).toString('hex') };
  if (Array.isArray(v)) return v.map(msgpackToJson);
  const out = Object.create(null) as { [key: string]: JsonValue };
  for (const [k, item] of Object.entries(v)) out[k] = msgpackToJson(item);
  return out;
}

const decimal = (hashes: BigUint64Array): string[] => Array.from(hashes, (h) => h.toString());

/**
 * One event in the `kvix decode` debug view: every field present (those an engine version does not
 * send as null), 64-bit values as decimal strings, the medium as sent and the index tier it
 * normalises to (with locality), and `dialect` "sglang" for SGLang's map layout.
 */
export function eventToDebugJson(ev: KvEvent): { [key: string]: JsonValue } {
  switch (ev.type) {
    case 'BlockStored':
      return {
        type: ev.type,
        blockHashes: decimal(ev.blockHashes),
        parentBlockHash: ev.parentBlockHash === null ? null : ev.parentBlockHash.toString(),
        tokenIds: Array.from(ev.tokenIds),
        blockSize: ev.blockSize,
        loraId: ev.loraId,
        medium: ev.medium,
        loraName: ev.loraName,
        extraKeys: ev.extraKeys === null ? null : ev.extraKeys.map((k) => (k === null ? null : k.map(msgpackToJson))),
        groupIdx: ev.groupIdx,
        kvCacheSpecKind: ev.kvCacheSpecKind,
        kvCacheSpecSlidingWindow: ev.kvCacheSpecSlidingWindow,
        locality: ev.locality ?? null,
        ownership: ev.ownership ?? null,
        sessionId: ev.sessionId ?? null,
        lookaheadTokenIds: ev.lookaheadTokenIds ?? null,
        cacheSalt: ev.cacheSalt ?? null,
        tier: tierOfEvent(ev),
        ...dialectOf(ev),
      };
    case 'BlockRemoved':
      return {
        type: ev.type,
        blockHashes: decimal(ev.blockHashes),
        medium: ev.medium,
        groupIdx: ev.groupIdx,
        locality: ev.locality ?? null,
        ownership: ev.ownership ?? null,
        tier: tierOfEvent(ev),
      };
    case 'AllBlocksCleared':
      return { type: ev.type };
  }
}

function dialectOf(ev: KvEvent): { dialect?: string; signedHashes?: boolean } {
  const out: { dialect?: string; signedHashes?: boolean } = {};
  if (ev.encoding?.layout === 'map' && ev.encoding.dialect !== undefined) out.dialect = ev.encoding.dialect;
  if (ev.type !== 'AllBlocksCleared' && ev.signedHashes === true) out.signedHashes = true;
  return out;
}

/** The `kvix decode` JSON document for a decoded batch (medium as sent, not lower-cased). */
export function batchToDebugJson(batch: DecodedBatch): { [key: string]: JsonValue } {
  return {
    ts: batch.ts,
    dataParallelRank: batch.dataParallelRank,
    events: batch.events.map(eventToDebugJson),
    skipped: batch.skipped.map((s) => ({ index: s.index, reason: s.reason })),
  };
}
