import { EventEncodeError } from './errors.js';
import type { MsgpackValue } from './types.js';

const utf8 = new TextEncoder();

/**
 * Writes msgpack exactly as msgspec (vLLM's encoder) does: integers in their smallest form,
 * floats always as float64, strings as fixstr/str8/16/32, bin8/16/32.
 *
 * Hand-written because byte-identical output is the contract (the simulator must be
 * indistinguishable from vLLM): @msgpack/msgpack writes integral floats as ints and bigints always
 * as 9-byte int64/uint64, both of which differ from msgspec.
 */
export class MsgpackWriter {
  buf: Uint8Array;
  pos = 0;
  private view: DataView;

  constructor(initialCapacity = 4096) {
    this.buf = new Uint8Array(initialCapacity);
    this.view = new DataView(this.buf.buffer);
  }

  reset(): void {
    this.pos = 0;
  }

  /** A copy of the bytes written so far. */
  toBytes(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }

  reserve(n: number): void {
    const need = this.pos + n;
    if (need <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < need) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  private u8(b: number): void {
    this.buf[this.pos++] = b;
  }

  private u16(v: number): void {
    this.buf[this.pos++] = v >>> 8;
    this.buf[this.pos++] = v & 0xff;
  }

  private u32(v: number): void {
    this.buf[this.pos++] = v >>> 24;
    this.buf[this.pos++] = (v >>> 16) & 0xff;
    this.buf[this.pos++] = (v >>> 8) & 0xff;
    this.buf[this.pos++] = v & 0xff;
  }

  nil(): void {
    this.reserve(1);
    this.u8(0xc0);
  }

  bool(v: boolean): void {
    this.reserve(1);
    this.u8(v ? 0xc3 : 0xc2);
  }

  float64(v: number): void {
    this.reserve(9);
    this.u8(0xcb);
    this.view.setFloat64(this.pos, v);
    this.pos += 8;
  }

  /** A non-negative integer below 2^32 (the hot case: token ids, lengths). */
  uint32(v: number): void {
    this.reserve(5);
    if (v <= 0x7f) this.u8(v);
    else if (v <= 0xff) {
      this.u8(0xcc);
      this.u8(v);
    } else if (v <= 0xffff) {
      this.u8(0xcd);
      this.u16(v);
    } else {
      this.u8(0xce);
      this.u32(v);
    }
  }

  /** An unsigned 64-bit value given as two words, in its smallest form. */
  uint64Words(lo: number, hi: number): void {
    if (hi === 0) {
      this.uint32(lo);
      return;
    }
    this.reserve(9);
    this.u8(0xcf);
    this.u32(hi);
    this.u32(lo);
  }

  /** Any integer in [-2^63, 2^64), smallest form. */
  int(v: number | bigint): void {
    if (typeof v === 'number') {
      if (!Number.isSafeInteger(v)) throw new EventEncodeError('BAD_VALUE', `${v} is not a safe integer`);
      if (v >= 0 && v <= 0xffffffff) {
        this.uint32(v);
        return;
      }
      v = BigInt(v);
    }
    if (v >= 0n) {
      if (v > 0xffffffffffffffffn) throw new EventEncodeError('BAD_VALUE', `${v} exceeds uint64`);
      this.uint64Words(Number(v & 0xffffffffn), Number(v >> 32n));
      return;
    }
    if (v < -(1n << 63n)) throw new EventEncodeError('BAD_VALUE', `${v} is below int64`);
    const n = Number(v);
    this.reserve(9);
    if (n >= -32) this.u8(n & 0xff);
    else if (n >= -0x80) {
      this.u8(0xd0);
      this.u8(n & 0xff);
    } else if (n >= -0x8000) {
      this.u8(0xd1);
      this.u16(n & 0xffff);
    } else if (n >= -0x80000000) {
      this.u8(0xd2);
      this.u32(n >>> 0);
    } else {
      const u = BigInt.asUintN(64, v);
      this.u8(0xd3);
      this.u32(Number(u >> 32n));
      this.u32(Number(u & 0xffffffffn));
    }
  }

  str(s: string): void {
    const bytes = utf8.encode(s);
    const n = bytes.length;
    this.reserve(5 + n);
    if (n <= 31) this.u8(0xa0 | n);
    else if (n <= 0xff) {
      this.u8(0xd9);
      this.u8(n);
    } else if (n <= 0xffff) {
      this.u8(0xda);
      this.u16(n);
    } else {
      this.u8(0xdb);
      this.u32(n);
    }
    this.buf.set(bytes, this.pos);
    this.pos += n;
  }

  bin(bytes: Uint8Array): void {
    const n = bytes.length;
    this.reserve(5 + n);
    if (n <= 0xff) {
      this.u8(0xc4);
      this.u8(n);
    } else if (n <= 0xffff) {
      this.u8(0xc5);
      this.u16(n);
    } else {
      this.u8(0xc6);
      this.u32(n);
    }
    this.buf.set(bytes, this.pos);
    this.pos += n;
  }

  arrayHead(n: number): void {
    this.reserve(5);
    if (n <= 15) this.u8(0x90 | n);
    else if (n <= 0xffff) {
      this.u8(0xdc);
      this.u16(n);
    } else {
      this.u8(0xdd);
      this.u32(n);
    }
  }

  /**
   * `wide`: a map16 head even below 16 entries, as msgspec sizes a struct's head by the struct's
   * field count rather than by the fields it writes.
   */
  mapHead(n: number, wide = false): void {
    this.reserve(5);
    if (n <= 15 && !wide) this.u8(0x80 | n);
    else if (n <= 0xffff) {
      this.u8(0xde);
      this.u16(n);
    } else {
      this.u8(0xdf);
      this.u32(n);
    }
  }

  /** Token ids: an array of uint32 in smallest forms. */
  uint32Array(values: ArrayLike<number>): void {
    const n = values.length;
    this.arrayHead(n);
    this.reserve(5 * n);
    for (let i = 0; i < n; i++) this.uint32(values[i]! >>> 0);
  }

  value(v: MsgpackValue): void {
    if (v === null) this.nil();
    else if (typeof v === 'boolean') this.bool(v);
    else if (typeof v === 'bigint') this.int(v);
    else if (typeof v === 'number') {
      if (Number.isInteger(v) && Number.isSafeInteger(v)) this.int(v);
      else this.float64(v);
    } else if (typeof v === 'string') this.str(v);
    else if (v instanceof Uint8Array) this.bin(v);
    else if (Array.isArray(v)) {
      this.arrayHead(v.length);
      for (const item of v) this.value(item);
    } else {
      const entries = Object.entries(v);
      this.mapHead(entries.length);
      for (const [k, item] of entries) {
        this.str(k);
        this.value(item);
      }
    }
  }
}
