/**
 * 32-bit views of the 64-bit key arrays callers pass, one per buffer. Callers' keys are mostly
 * views of a few buffers (the event decoder's slabs, a prompt buffer a router reuses), so a call
 * usually allocates no view of its own: a typed-array view costs an allocation per call (and its
 * share of young-generation collections) on paths that otherwise allocate nothing per key.
 */
export class WordViews {
  private buffer: ArrayBufferLike | null = null;
  private view: Uint32Array = new Uint32Array(0);
  /** Where the keys of the last `of` start in its view, in words. */
  base = 0;

  of(keys: BigUint64Array): Uint32Array {
    const base = keys.byteOffset >> 2;
    if (keys.buffer !== this.buffer || base + 2 * keys.length > this.view.length) {
      this.buffer = keys.buffer;
      this.view = new Uint32Array(keys.buffer, 0, keys.buffer.byteLength >> 2);
    }
    this.base = base;
    return this.view;
  }
}
