/**
 * Backing memory for decoded hash and token arrays. A typed array with its own buffer costs
 * ~300–550 ns to create, a view on an existing buffer ~20–35 ns (measured on the bench machine),
 * and a batch creates two or three per event; so events are carved from shared slabs.
 *
 * Consequence for callers: a decoded event's arrays keep their slab alive. Consumers apply events
 * and drop them, which is the intended use; copy (`.slice()`) anything kept for long.
 */
const SLAB_BYTES = 256 * 1024;
/** Arrays larger than this get their own buffer rather than wasting the slab's tail. */
const MAX_SLAB_ALLOCATION = SLAB_BYTES / 8;

let slab = new ArrayBuffer(SLAB_BYTES);
let offset = 0;

function carve(bytes: number): [ArrayBuffer, number] {
  const aligned = (bytes + 7) & ~7;
  if (aligned > MAX_SLAB_ALLOCATION) return [new ArrayBuffer(aligned), 0];
  if (offset + aligned > SLAB_BYTES) {
    slab = new ArrayBuffer(SLAB_BYTES);
    offset = 0;
  }
  const at = offset;
  offset += aligned;
  return [slab, at];
}

/** A zeroed-or-overwritten u64 array and its [lo, hi] word view over the same memory. */
export function allocHashes(n: number): [BigUint64Array, Uint32Array] {
  const [buffer, at] = carve(n * 8);
  return [new BigUint64Array(buffer, at, n), new Uint32Array(buffer, at, n * 2)];
}

export function allocTokens(n: number): Uint32Array {
  const [buffer, at] = carve(n * 4);
  return new Uint32Array(buffer, at, n);
}
