/**
 * Result columns (lookups, prefix matches) carved from shared slabs: a typed array with its own buffer costs
 * ~300–550 ns to create, a view on a slab ~20–35 ns, and a lookup returns five of them. The
 * columns of one result never overlap another's; a slab is freed once no result views it.
 */
const SLAB_BYTES = 1 << 20;
let slab = new ArrayBuffer(SLAB_BYTES);
let offset = 0;

/** `total` bytes (a multiple of 8) from the current slab, or a buffer of their own when large. */
function carve(total: number): { buffer: ArrayBuffer; at: number } {
  if (total > SLAB_BYTES / 4) return { buffer: new ArrayBuffer(total), at: 0 };
  if (offset + total > SLAB_BYTES) {
    slab = new ArrayBuffer(SLAB_BYTES);
    offset = 0;
  }
  const at = offset;
  offset += total;
  return { buffer: slab, at };
}

export interface Columns {
  offsets: Uint32Array;
  podIndex: Uint32Array;
  tierIndex: Uint8Array;
  flags: Uint8Array;
  group: Uint16Array;
}

export function allocColumns(keyCount: number, entries: number): Columns {
  const align = (n: number): number => (n + 7) & ~7;
  const offsetsBytes = align(4 * (keyCount + 1));
  const podBytes = align(4 * entries);
  const groupBytes = align(2 * entries);
  const byteBytes = align(entries);
  const total = offsetsBytes + podBytes + groupBytes + 2 * byteBytes;
  const { buffer, at: start } = carve(total);
  let at = start;
  const offsets = new Uint32Array(buffer, at, keyCount + 1);
  at += offsetsBytes;
  const podIndex = new Uint32Array(buffer, at, entries);
  at += podBytes;
  const group = new Uint16Array(buffer, at, entries);
  at += groupBytes;
  const tierIndex = new Uint8Array(buffer, at, entries);
  at += byteBytes;
  const flags = new Uint8Array(buffer, at, entries);
  return { offsets, podIndex, tierIndex, flags, group };
}

export interface PrefixColumns {
  podIndex: Uint32Array;
  matchedBlocks: Uint32Array;
  score: Float64Array;
  tierBlocks: Uint32Array;
}

/** Columns of a prefix match for `pods` pods and `tierSlots` counts per pod, from the same slabs. */
export function allocPrefixColumns(pods: number, tierSlots: number): PrefixColumns {
  const align = (n: number): number => (n + 7) & ~7;
  const scoreBytes = 8 * pods;
  const podBytes = align(4 * pods);
  const tierBytes = align(4 * pods * tierSlots);
  const total = scoreBytes + 2 * podBytes + tierBytes;
  const { buffer, at: start } = carve(total);
  let at = start;
  const score = new Float64Array(buffer, at, pods);
  at += scoreBytes;
  const podIndex = new Uint32Array(buffer, at, pods);
  at += podBytes;
  const matchedBlocks = new Uint32Array(buffer, at, pods);
  at += podBytes;
  const tierBlocks = new Uint32Array(buffer, at, pods * tierSlots);
  return { podIndex, matchedBlocks, score, tierBlocks };
}
