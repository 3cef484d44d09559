import type { BlockRemoved, BlockStored, EncodeOptions, KvEvent } from '@kvix/kv-events';
import type { WireProfile } from '../config.js';

/**
 * The engine's events as the configured engine and version put them on the wire. The simulated
 * engine produces vLLM 0.34's events (with the request's cache salt alongside); older vLLM drops
 * 0.34's fields, SGLang moves the salt to its own field, drops extra keys and KV-cache groups, and
 * sends its hashes as signed int64.
 */
export function toWire(events: readonly KvEvent[], wire: WireProfile): KvEvent[] {
  return events.map((ev) => {
    if (ev.type === 'AllBlocksCleared') return ev;
    if (wire.engine === 'sglang') return ev.type === 'BlockStored' ? sglangStored(ev) : sglangRemoved(ev);
    if (ev.type === 'BlockRemoved') {
      const { locality: _l, ownership: _o, ...rest } = ev;
      return wire.v034 ? ev : rest;
    }
    const { cacheSalt: _s, ...rest } = ev;
    if (wire.v034) return rest;
    const { locality: _l, ownership: _o, sessionId: _i, lookaheadTokenIds: _t, ...older } = rest;
    return older;
  });
}

function sglangStored(ev: BlockStored): BlockStored {
  const out: BlockStored = {
    type: 'BlockStored',
    blockHashes: ev.blockHashes,
    parentBlockHash: ev.parentBlockHash,
    tokenIds: ev.tokenIds,
    blockSize: ev.blockSize,
    loraId: null,
    medium: ev.medium,
    loraName: ev.loraName,
    extraKeys: null,
    groupIdx: null,
    kvCacheSpecKind: null,
    kvCacheSpecSlidingWindow: null,
    cacheSalt: ev.cacheSalt ?? null,
    sessionId: ev.sessionId ?? null,
    signedHashes: true,
  };
  return out;
}

function sglangRemoved(ev: BlockRemoved): BlockRemoved {
  return { type: 'BlockRemoved', blockHashes: ev.blockHashes, medium: ev.medium, groupIdx: null, signedHashes: true };
}

/** How the batch is encoded: SGLang's map layout, or vLLM 0.34's 16-field struct (a map16 head). */
export function encodeOptionsFor(wire: WireProfile, layout: 'array' | 'map'): Pick<EncodeOptions, 'layout' | 'map'> {
  if (wire.engine === 'sglang') return { layout: 'map', map: { dialect: 'sglang' } };
  return layout === 'map' && wire.v034 ? { layout, map: { wide: true } } : { layout };
}
