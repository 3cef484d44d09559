const utf8 = new TextEncoder();

/** A growable byte buffer that is reused across calls so hot paths do not allocate. */
export class ByteWriter {
  buf: Uint8Array;
  pos = 0;

  constructor(initialCapacity = 1024) {
    this.buf = new Uint8Array(initialCapacity);
  }

  reset(): void {
    this.pos = 0;
  }

  /** Makes room for n more bytes. */
  reserve(n: number): void {
    const need = this.pos + n;
    if (need <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < need) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  u8(b: number): void {
    this.reserve(1);
    this.buf[this.pos++] = b;
  }

  raw(src: Uint8Array): void {
    this.reserve(src.length);
    this.buf.set(src, this.pos);
    this.pos += src.length;
  }

  /** UTF-8 bytes of s, without any length prefix. */
  utf8(s: string): void {
    // Upper bound: 3 bytes per UTF-16 unit.
    this.reserve(s.length * 3);
    const { written } = utf8.encodeInto(s, this.buf.subarray(this.pos));
    this.pos += written;
  }

  /** A copy of what was written so far. */
  toBytes(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }
}

export function utf8Bytes(s: string): Uint8Array {
  return utf8.encode(s);
}
