import { ByteWriter, utf8Bytes } from '../byte-writer.js';
import type { PyValue } from '../cbor.js';

/**
 * `pickle.dumps(value, protocol=5)` as CPython writes it, for the values vLLM hashes: None, int,
 * str, bytes and (nested) tuples. Memo references (BINGET) are never emitted because vLLM's hash
 * inputs are freshly built tuples; each str/bytes/tuple still gets its MEMOIZE opcode.
 *
 * Framing follows CPython's C pickler, since the frame headers are part of the hashed bytes: a
 * frame is closed at the start of the first save() that finds it at 64 KiB or more, a str/bytes
 * payload of 64 KiB or more is written outside any frame, and a frame under 4 bytes gets no header.
 */

const PROTO = 0x80;
const FRAME = 0x95;
const STOP = 0x2e;
const NONE = 0x4e;
const BININT = 0x4a;
const BININT1 = 0x4b;
const BININT2 = 0x4d;
const LONG1 = 0x8a;
const SHORT_BINUNICODE = 0x8c;
const BINUNICODE = 0x58;
const SHORT_BINBYTES = 0x43;
const BINBYTES = 0x42;
const EMPTY_TUPLE = 0x29;
const MARK = 0x28;
const TUPLE = 0x74;
const TUPLE1 = 0x85;
const MEMOIZE = 0x94;

/** CPython's _pickle.c constants. */
const FRAME_SIZE_TARGET = 64 * 1024;
const FRAME_SIZE_MIN = 4;
const FRAME_HEADER_SIZE = 9;

export class PickleWriter {
  private readonly body = new ByteWriter(1024);
  /** Where the open frame's header goes, or -1 when no frame is open. */
  private frameStart = -1;

  /** The pickle of `value`; the returned view is valid until the next call. */
  dumps(value: PyValue): Uint8Array {
    const w = this.body;
    w.reset();
    this.frameStart = -1;
    w.u8(PROTO);
    w.u8(5);
    this.save(value);
    this.openFrame();
    w.u8(STOP);
    this.commitFrame();
    return w.buf.subarray(0, w.pos);
  }

  /** Opens a frame (its header is filled in on commit) unless one is open. */
  private openFrame(): void {
    if (this.frameStart >= 0) return;
    const w = this.body;
    this.frameStart = w.pos;
    w.reserve(FRAME_HEADER_SIZE);
    w.pos += FRAME_HEADER_SIZE;
  }

  private commitFrame(): void {
    const start = this.frameStart;
    if (start < 0) return;
    const w = this.body;
    const length = w.pos - start - FRAME_HEADER_SIZE;
    if (length >= FRAME_SIZE_MIN) {
      w.buf[start] = FRAME;
      w.buf.fill(0, start + 1, start + FRAME_HEADER_SIZE);
      w.buf[start + 1] = length & 0xff;
      w.buf[start + 2] = (length >>> 8) & 0xff;
      w.buf[start + 3] = (length >>> 16) & 0xff;
      w.buf[start + 4] = length >>> 24;
    } else {
      w.buf.copyWithin(start, start + FRAME_HEADER_SIZE, w.pos);
      w.pos -= FRAME_HEADER_SIZE;
    }
    this.frameStart = -1;
  }

  private save(v: PyValue): void {
    const w = this.body;
    if (this.frameStart >= 0 && w.pos - this.frameStart - FRAME_HEADER_SIZE >= FRAME_SIZE_TARGET) this.commitFrame();
    // A large str/bytes opens its own frame after its unframed payload.
    if (!(typeof v === 'string' || v instanceof Uint8Array)) this.openFrame();
    if (v === null) {
      w.u8(NONE);
    } else if (typeof v === 'number' || typeof v === 'bigint') {
      this.saveInt(typeof v === 'bigint' ? v : BigInt(v));
    } else if (typeof v === 'string') {
      this.saveSized(SHORT_BINUNICODE, BINUNICODE, utf8Bytes(v));
    } else if (v instanceof Uint8Array) {
      this.saveSized(SHORT_BINBYTES, BINBYTES, v);
    } else {
      this.saveTuple(v);
    }
  }

  /** str and bytes: a 1-byte length below 256, else a 4-byte one; then MEMOIZE. */
  private saveSized(shortOpcode: number, longOpcode: number, bytes: Uint8Array): void {
    const w = this.body;
    if (bytes.length >= FRAME_SIZE_TARGET) this.commitFrame();
    else this.openFrame();
    if (bytes.length < 0x100) {
      w.u8(shortOpcode);
      w.u8(bytes.length);
    } else {
      w.u8(longOpcode);
      writeUint32LE(w, bytes.length);
    }
    w.raw(bytes);
    this.openFrame();
    w.u8(MEMOIZE);
  }

  private saveTuple(items: readonly PyValue[]): void {
    const w = this.body;
    if (items.length === 0) {
      w.u8(EMPTY_TUPLE);
      return;
    }
    if (items.length <= 3) {
      for (const item of items) this.save(item);
      w.u8(TUPLE1 + items.length - 1);
    } else {
      w.u8(MARK);
      for (const item of items) this.save(item);
      w.u8(TUPLE);
    }
    w.u8(MEMOIZE);
  }

  private saveInt(n: bigint): void {
    const w = this.body;
    if (n >= 0n && n < 0x100n) {
      w.u8(BININT1);
      w.u8(Number(n));
    } else if (n >= 0n && n < 0x10000n) {
      const v = Number(n);
      w.u8(BININT2);
      w.u8(v & 0xff);
      w.u8(v >>> 8);
    } else if (n >= -0x80000000n && n < 0x80000000n) {
      w.u8(BININT);
      writeUint32LE(w, Number(BigInt.asUintN(32, n)));
    } else {
      // LONG1: little-endian two's complement in (bit_length >> 3) + 1 bytes, as CPython sizes it,
      // trimming one redundant 0xff byte for negatives.
      const magnitude = n < 0n ? -n : n;
      let nbytes = (magnitude.toString(2).length >> 3) + 1;
      const bytes: number[] = [];
      let x = BigInt.asUintN(nbytes * 8, n);
      for (let i = 0; i < nbytes; i++) {
        bytes.push(Number(x & 0xffn));
        x >>= 8n;
      }
      if (n < 0n && nbytes > 1 && bytes[nbytes - 1] === 0xff && (bytes[nbytes - 2]! & 0x80) !== 0) nbytes--;
      w.u8(LONG1);
      w.u8(nbytes);
      for (let i = 0; i < nbytes; i++) w.u8(bytes[i]!);
    }
  }
}

function writeUint32LE(w: ByteWriter, v: number): void {
  w.reserve(4);
  w.buf[w.pos++] = v & 0xff;
  w.buf[w.pos++] = (v >>> 8) & 0xff;
  w.buf[w.pos++] = (v >>> 16) & 0xff;
  w.buf[w.pos++] = v >>> 24;
}
