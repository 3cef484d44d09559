import { ByteWriter, utf8Bytes } from './byte-writer.js';

/**
 * The canonical-CBOR subset that request keys and vLLM's `*_cbor` engine hashes need: unsigned and
 * negative integers, byte and text strings, arrays, null, and one-entry maps. Every head uses its
 * shortest form, as RFC 8949 core deterministic encoding (and Go's and Python's canonical modes)
 * require.
 */

export const CBOR_NULL = 0xf6;
const MAJOR_UINT = 0;
const MAJOR_NEGINT = 1;
const MAJOR_BYTES = 2;
const MAJOR_TEXT = 3;
const MAJOR_ARRAY = 4;
const MAJOR_MAP = 5;

/** A Python value as vLLM hashes it (tuples are arrays; bytes are Uint8Array). */
export type PyValue = null | number | bigint | string | Uint8Array | readonly PyValue[];

export class CborWriter extends ByteWriter {
  /** A head for a non-negative integer below 2^32. */
  head32(major: number, n: number): void {
    this.reserve(5);
    const b = this.buf;
    const m = major << 5;
    if (n < 24) {
      b[this.pos++] = m | n;
    } else if (n < 0x100) {
      b[this.pos++] = m | 24;
      b[this.pos++] = n;
    } else if (n < 0x10000) {
      b[this.pos++] = m | 25;
      b[this.pos++] = n >>> 8;
      b[this.pos++] = n & 0xff;
    } else {
      b[this.pos++] = m | 26;
      b[this.pos++] = n >>> 24;
      b[this.pos++] = (n >>> 16) & 0xff;
      b[this.pos++] = (n >>> 8) & 0xff;
      b[this.pos++] = n & 0xff;
    }
  }

  /** A head for a 64-bit value given as two 32-bit words. */
  head64(major: number, hi: number, lo: number): void {
    if (hi === 0) {
      this.head32(major, lo >>> 0);
      return;
    }
    this.reserve(9);
    const b = this.buf;
    b[this.pos++] = (major << 5) | 27;
    b[this.pos++] = hi >>> 24;
    b[this.pos++] = (hi >>> 16) & 0xff;
    b[this.pos++] = (hi >>> 8) & 0xff;
    b[this.pos++] = hi & 0xff;
    b[this.pos++] = lo >>> 24;
    b[this.pos++] = (lo >>> 16) & 0xff;
    b[this.pos++] = (lo >>> 8) & 0xff;
    b[this.pos++] = lo & 0xff;
  }

  headBig(major: number, n: bigint): void {
    this.head64(major, Number(n >> 32n), Number(n & 0xffffffffn));
  }

  integer(v: number | bigint): void {
    const n = typeof v === 'bigint' ? v : BigInt(v);
    if (n >= 0n) {
      if (n >= 1n << 64n) throw new RangeError(`integer ${n} does not fit CBOR's 64-bit heads`);
      this.headBig(MAJOR_UINT, n);
    } else {
      const m = -1n - n;
      if (m >= 1n << 64n) throw new RangeError(`integer ${n} does not fit CBOR's 64-bit heads`);
      this.headBig(MAJOR_NEGINT, m);
    }
  }

  text(s: string): void {
    const bytes = utf8Bytes(s);
    this.head32(MAJOR_TEXT, bytes.length);
    this.raw(bytes);
  }

  textBytes(utf8: Uint8Array): void {
    this.head32(MAJOR_TEXT, utf8.length);
    this.raw(utf8);
  }

  byteString(bytes: Uint8Array): void {
    this.head32(MAJOR_BYTES, bytes.length);
    this.raw(bytes);
  }

  arrayHead(n: number): void {
    this.head32(MAJOR_ARRAY, n);
  }

  mapHead(n: number): void {
    this.head32(MAJOR_MAP, n);
  }

  nil(): void {
    this.u8(CBOR_NULL);
  }

  /** tokens[start, end) as an array of unsigned ints; tokens are uint32 by contract. */
  uint32Array(tokens: ArrayLike<number>, start: number, end: number): void {
    const n = end - start;
    this.head32(MAJOR_ARRAY, n);
    this.reserve(5 * n);
    const b = this.buf;
    let p = this.pos;
    for (let i = start; i < end; i++) {
      const t = tokens[i]! >>> 0;
      if (t < 24) {
        b[p++] = t;
      } else if (t < 0x100) {
        b[p++] = 0x18;
        b[p++] = t;
      } else if (t < 0x10000) {
        b[p++] = 0x19;
        b[p++] = t >>> 8;
        b[p++] = t & 0xff;
      } else {
        b[p++] = 0x1a;
        b[p++] = t >>> 24;
        b[p++] = (t >>> 16) & 0xff;
        b[p++] = (t >>> 8) & 0xff;
        b[p++] = t & 0xff;
      }
    }
    this.pos = p;
  }

  /** Any PyValue; tuples and lists both become arrays, as cbor2 encodes them. */
  value(v: PyValue): void {
    if (v === null) this.nil();
    else if (typeof v === 'number' || typeof v === 'bigint') this.integer(v);
    else if (typeof v === 'string') this.text(v);
    else if (v instanceof Uint8Array) this.byteString(v);
    else {
      this.arrayHead(v.length);
      for (const item of v) this.value(item);
    }
  }
}
