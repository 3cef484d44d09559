import { EventDecodeError } from './errors.js';
import type { MsgpackValue } from './types.js';

/**
 * A cursor over one msgpack payload, with typed reads for the shapes KV events use.
 *
 * Hand-written rather than @msgpack/msgpack because the generic decoder materialises every token
 * id and hash as a JS value and rounds uint64 hashes above 2^53 (unless switched to BigInt for
 * every integer). Reading hashes straight into BigUint64Array words and tokens into Uint32Array
 * gives exact, typed events at 8–10 M blocks/s against its 3.4–4.4 M for lossy generic values
 * (bench/event-decode, same run, 16-token blocks).
 *
 * Structural problems (truncation, reserved bytes) throw EventDecodeError; a value of the wrong
 * type throws WrongType, which the batch decoder turns into a skipped event.
 */

export class WrongType extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}

const utf8 = new TextDecoder('utf-8');
const f32 = new DataView(new ArrayBuffer(4));

/**
 * Field names, event tags and tiers repeat in every event. Interning short strings by their bytes
 * returns the same string object each time: no allocation, and its hash is already cached for the
 * field lookups that follow. (Profiled: building these strings was half of map-layout decoding.)
 */
const INTERN_MAX_LEN = 32;
const INTERN_SLOTS = 1024;
const internBytes: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(INTERN_SLOTS);
const internStrings: string[] = new Array<string>(INTERN_SLOTS);

function internedString(b: Uint8Array, start: number, len: number): string {
  let h = len;
  for (let i = start; i < start + len; i++) h = (Math.imul(h, 31) + b[i]!) | 0;
  const slot = (h ^ (h >>> 15)) & (INTERN_SLOTS - 1);
  const cached = internBytes[slot];
  if (cached !== undefined && cached.length === len) {
    let same = true;
    for (let i = 0; i < len; i++) {
      if (cached[i] !== b[start + i]) {
        same = false;
        break;
      }
    }
    if (same) return internStrings[slot]!;
  }
  const s = utf8.decode(b.subarray(start, start + len));
  internBytes[slot] = b.slice(start, start + len);
  internStrings[slot] = s;
  return s;
}

export type HashForm = 'uint' | 'negative' | 'bytes';

/**
 * Known map keys by their UTF-8 bytes, bucketed by length, so a key is identified with one short
 * byte comparison instead of building a string and hashing it.
 */
export class FieldTable {
  private readonly byLength: { bytes: Uint8Array; id: number }[][] = [];

  constructor(names: readonly string[]) {
    const enc = new TextEncoder();
    names.forEach((name, id) => {
      const bytes = enc.encode(name);
      (this.byLength[bytes.length] ??= []).push({ bytes, id });
    });
  }

  /** The id of the key at buf[start, start+len), or -1. */
  match(buf: Uint8Array, start: number, len: number): number {
    const candidates = this.byLength[len];
    if (candidates === undefined) return -1;
    outer: for (const { bytes, id } of candidates) {
      for (let i = len - 1; i >= 0; i--) if (bytes[i] !== buf[start + i]) continue outer;
      return id;
    }
    return -1;
  }
}

export class MsgpackReader {
  pos: number;
  /** The digest read by the last hashInto call that returned 'bytes' (a view into the payload). */
  lastHashBytes: Uint8Array = new Uint8Array(0);

  constructor(
    readonly buf: Uint8Array,
    pos = 0,
  ) {
    this.pos = pos;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  atEnd(): boolean {
    return this.pos >= this.buf.length;
  }

  private need(n: number): void {
    if (this.pos + n > this.buf.length) {
      throw new EventDecodeError('TRUNCATED', `payload ends inside a value (needs ${n} more bytes, has ${this.buf.length - this.pos})`, this.pos);
    }
  }

  peekByte(): number {
    this.need(1);
    return this.buf[this.pos]!;
  }

  private u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }

  private u16(): number {
    this.need(2);
    const b = this.buf;
    const v = (b[this.pos]! << 8) | b[this.pos + 1]!;
    this.pos += 2;
    return v;
  }

  private u32(): number {
    this.need(4);
    const b = this.buf;
    const p = this.pos;
    const v = ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;
    this.pos += 4;
    return v;
  }

  isNil(): boolean {
    return this.peekByte() === 0xc0;
  }

  /** Consumes a nil if one is next. */
  tryNil(): boolean {
    if (this.peekByte() === 0xc0) {
      this.pos++;
      return true;
    }
    return false;
  }

  /** Array length if an array is next (consuming its head), else -1 without consuming. */
  tryArrayHead(): number {
    const b = this.peekByte();
    if (b >= 0x90 && b <= 0x9f) {
      this.pos++;
      return b & 0x0f;
    }
    if (b === 0xdc) {
      this.pos++;
      return this.plausibleCount(this.u16(), 1);
    }
    if (b === 0xdd) {
      this.pos++;
      return this.plausibleCount(this.u32(), 1);
    }
    return -1;
  }

  /**
   * Every element takes at least one byte (a map entry two), so a count beyond what is left is a
   * truncated payload. Checked here, before callers size typed arrays by it: a forged 32-bit count
   * would otherwise ask for gigabytes and fail as a RangeError instead of a typed error.
   */
  private plausibleCount(n: number, bytesPerElement: number): number {
    if (n * bytesPerElement > this.buf.length - this.pos) {
      throw new EventDecodeError('TRUNCATED', `a container claims ${n} elements but only ${this.buf.length - this.pos} bytes remain`, this.pos);
    }
    return n;
  }

  /** Map entry count if a map is next (consuming its head), else -1 without consuming. */
  tryMapHead(): number {
    const b = this.peekByte();
    if (b >= 0x80 && b <= 0x8f) {
      this.pos++;
      return b & 0x0f;
    }
    if (b === 0xde) {
      this.pos++;
      return this.plausibleCount(this.u16(), 2);
    }
    if (b === 0xdf) {
      this.pos++;
      return this.plausibleCount(this.u32(), 2);
    }
    return -1;
  }

  arrayHead(what: string): number {
    const n = this.tryArrayHead();
    if (n < 0) throw new WrongType(`${what} is not an array`);
    return n;
  }

  /** Byte length of a str if one is next (consuming its head), else -1 without consuming. */
  private tryStrHead(): number {
    const b = this.peekByte();
    if (b >= 0xa0 && b <= 0xbf) {
      this.pos++;
      return b & 0x1f;
    }
    if (b === 0xd9) {
      this.pos++;
      return this.u8();
    }
    if (b === 0xda) {
      this.pos++;
      return this.u16();
    }
    if (b === 0xdb) {
      this.pos++;
      return this.u32();
    }
    return -1;
  }

  private tryBinHead(): number {
    const b = this.peekByte();
    if (b === 0xc4) {
      this.pos++;
      return this.u8();
    }
    if (b === 0xc5) {
      this.pos++;
      return this.u16();
    }
    if (b === 0xc6) {
      this.pos++;
      return this.u32();
    }
    return -1;
  }

  private utf8Of(len: number): string {
    this.need(len);
    const b = this.buf;
    const start = this.pos;
    this.pos += len;
    if (len <= INTERN_MAX_LEN) return internedString(b, start, len);
    return utf8.decode(b.subarray(start, start + len));
  }

  string(what: string): string {
    const len = this.tryStrHead();
    if (len < 0) throw new WrongType(`${what} is not a string`);
    return this.utf8Of(len);
  }

  stringOrNil(what: string): string | null {
    if (this.tryNil()) return null;
    return this.string(what);
  }

  /**
   * A map key: returns it as a string, or null (after skipping it) when the key is not a string,
   * so that odd keys from a future engine are ignored rather than fatal.
   */
  mapKey(): string | null {
    const len = this.tryStrHead();
    if (len < 0) {
      this.skip();
      return null;
    }
    return this.utf8Of(len);
  }

  /** Reads a map key and returns its id in `table`; unknown or non-string keys give -1. */
  fieldId(table: FieldTable): number {
    const len = this.tryStrHead();
    if (len < 0) {
      this.skip();
      return -1;
    }
    this.need(len);
    const start = this.pos;
    this.pos += len;
    return table.match(this.buf, start, len);
  }

  /** A signed integer within the safe range (|v| < 2^53). */
  int(what: string): number {
    const b = this.peekByte();
    if (b <= 0x7f) {
      this.pos++;
      return b;
    }
    if (b >= 0xe0) {
      this.pos++;
      return b - 0x100;
    }
    switch (b) {
      case 0xcc:
        this.pos++;
        return this.u8();
      case 0xcd:
        this.pos++;
        return this.u16();
      case 0xce:
        this.pos++;
        return this.u32();
      case 0xd0: {
        this.pos++;
        const v = this.u8();
        return v >= 0x80 ? v - 0x100 : v;
      }
      case 0xd1: {
        this.pos++;
        const v = this.u16();
        return v >= 0x8000 ? v - 0x10000 : v;
      }
      case 0xd2: {
        this.pos++;
        return this.u32() | 0;
      }
      case 0xcf:
      case 0xd3: {
        this.pos++;
        const hi = this.u32();
        const lo = this.u32();
        const big = (BigInt(hi) << 32n) | BigInt(lo);
        const v = b === 0xd3 ? BigInt.asIntN(64, big) : big;
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
          throw new WrongType(`${what} is outside the safe integer range`);
        }
        return Number(v);
      }
      default:
        throw new WrongType(`${what} is not an integer`);
    }
  }

  intOrNil(what: string): number | null {
    if (this.tryNil()) return null;
    return this.int(what);
  }

  /** Any number (float32/64 or integer), as vLLM's float timestamps may arrive from other encoders. */
  number(what: string): number {
    const b = this.peekByte();
    if (b === 0xcb) {
      this.pos++;
      this.need(8);
      const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 8).getFloat64(0);
      this.pos += 8;
      return v;
    }
    if (b === 0xca) {
      this.pos++;
      this.need(4);
      for (let i = 0; i < 4; i++) f32.setUint8(i, this.buf[this.pos + i]!);
      this.pos += 4;
      return f32.getFloat32(0);
    }
    return this.int(what);
  }

  /**
   * One block hash, normalised to u64 and written as [lo, hi] to words[2*i..2*i+1]: ints by their
   * 64-bit two's-complement pattern, bytes by their last 8 bytes read big-endian.
   */
  hashInto(words: Uint32Array, i: number, what: string): HashForm {
    const b = this.peekByte();
    const w = 2 * i;
    if (b <= 0x7f) {
      this.pos++;
      words[w] = b;
      words[w + 1] = 0;
      return 'uint';
    }
    switch (b) {
      case 0xcf:
        this.pos++;
        words[w + 1] = this.u32();
        words[w] = this.u32();
        return 'uint';
      case 0xce:
        this.pos++;
        words[w] = this.u32();
        words[w + 1] = 0;
        return 'uint';
      case 0xcd:
        this.pos++;
        words[w] = this.u16();
        words[w + 1] = 0;
        return 'uint';
      case 0xcc:
        this.pos++;
        words[w] = this.u8();
        words[w + 1] = 0;
        return 'uint';
      case 0xd3:
        this.pos++;
        words[w + 1] = this.u32();
        words[w] = this.u32();
        return words[w + 1]! >= 0x80000000 ? 'negative' : 'uint';
      case 0xd2:
      case 0xd1:
      case 0xd0: {
        const v = this.int(what);
        words[w] = v >>> 0;
        words[w + 1] = v < 0 ? 0xffffffff : 0;
        return v < 0 ? 'negative' : 'uint';
      }
      default:
        if (b >= 0xe0) {
          this.pos++;
          words[w] = (b - 0x100) >>> 0;
          words[w + 1] = 0xffffffff;
          return 'negative';
        }
    }
    const len = this.tryBinHead();
    if (len < 0) throw new WrongType(`${what} is neither an integer nor bytes`);
    if (len === 0) throw new WrongType(`${what} is an empty byte string`);
    this.need(len);
    const end = this.pos + len;
    const buf = this.buf;
    let lo = 0;
    let hi = 0;
    // Last 8 bytes, big-endian; shorter digests are left-padded with zeros.
    for (let p = Math.max(this.pos, end - 8); p < end; p++) {
      hi = ((hi << 8) | (lo >>> 24)) >>> 0;
      lo = ((lo << 8) | buf[p]!) >>> 0;
    }
    words[w] = lo;
    words[w + 1] = hi;
    this.lastHashBytes = buf.subarray(this.pos, end);
    this.pos = end;
    return 'bytes';
  }

  /**
   * `n` unsigned 32-bit token ids. Token ids are vocabulary indices: anything negative or above
   * 2^32-1 is not a token and makes the event unusable.
   */
  tokensInto(out: Uint32Array, n: number, what: string): void {
    const buf = this.buf;
    let p = this.pos;
    const len = buf.length;
    for (let i = 0; i < n; i++) {
      if (p >= len) {
        this.pos = p;
        this.need(1);
      }
      const b = buf[p]!;
      if (b <= 0x7f) {
        out[i] = b;
        p += 1;
      } else if (b === 0xce) {
        if (p + 5 > len) {
          this.pos = p;
          this.need(5);
        }
        out[i] = ((buf[p + 1]! << 24) | (buf[p + 2]! << 16) | (buf[p + 3]! << 8) | buf[p + 4]!) >>> 0;
        p += 5;
      } else if (b === 0xcd) {
        if (p + 3 > len) {
          this.pos = p;
          this.need(3);
        }
        out[i] = (buf[p + 1]! << 8) | buf[p + 2]!;
        p += 3;
      } else if (b === 0xcc) {
        if (p + 2 > len) {
          this.pos = p;
          this.need(2);
        }
        out[i] = buf[p + 1]!;
        p += 2;
      } else {
        this.pos = p;
        const v = this.int(`${what}[${i}]`);
        if (v < 0 || v > 0xffffffff) throw new WrongType(`${what}[${i}] = ${v} is not an unsigned 32-bit token id`);
        out[i] = v;
        p = this.pos;
      }
    }
    this.pos = p;
  }

  /** Skips one complete value of any type. */
  skip(): void {
    let pending = 1;
    while (pending > 0) {
      pending--;
      const b = this.u8();
      if (b <= 0x7f || b >= 0xe0) continue;
      if (b <= 0x8f) {
        pending += 2 * (b & 0x0f);
        continue;
      }
      if (b <= 0x9f) {
        pending += b & 0x0f;
        continue;
      }
      if (b <= 0xbf) {
        this.advance(b & 0x1f);
        continue;
      }
      switch (b) {
        case 0xc0:
        case 0xc2:
        case 0xc3:
          break;
        case 0xc4:
        case 0xd9:
          this.advance(this.u8());
          break;
        case 0xc5:
        case 0xda:
          this.advance(this.u16());
          break;
        case 0xc6:
        case 0xdb:
          this.advance(this.u32());
          break;
        case 0xc7:
          this.advance(this.u8() + 1);
          break;
        case 0xc8:
          this.advance(this.u16() + 1);
          break;
        case 0xc9:
          this.advance(this.u32() + 1);
          break;
        case 0xca:
        case 0xce:
        case 0xd2:
          this.advance(4);
          break;
        case 0xcb:
        case 0xcf:
        case 0xd3:
          this.advance(8);
          break;
        case 0xcc:
        case 0xd0:
          this.advance(1);
          break;
        case 0xcd:
        case 0xd1:
          this.advance(2);
          break;
        case 0xd4:
          this.advance(2);
          break;
        case 0xd5:
          this.advance(3);
          break;
        case 0xd6:
          this.advance(5);
          break;
        case 0xd7:
          this.advance(9);
          break;
        case 0xd8:
          this.advance(17);
          break;
        case 0xdc:
          pending += this.u16();
          break;
        case 0xdd:
          pending += this.u32();
          break;
        case 0xde:
          pending += 2 * this.u16();
          break;
        case 0xdf:
          pending += 2 * this.u32();
          break;
        default:
          throw new EventDecodeError('INVALID_MSGPACK', `reserved msgpack byte 0x${b.toString(16)}`, this.pos - 1);
      }
    }
  }

  private advance(n: number): void {
    this.need(n);
    this.pos += n;
  }

  /** Any value, generically (used for extra_keys, whose entries vary by engine version). */
  value(depth = 0): MsgpackValue {
    if (depth > 64) throw new WrongType('value nests deeper than 64 levels');
    const b = this.peekByte();
    if (b === 0xc0) {
      this.pos++;
      return null;
    }
    if (b === 0xc2 || b === 0xc3) {
      this.pos++;
      return b === 0xc3;
    }
    if (b === 0xca || b === 0xcb) return this.number('value');
    if (b === 0xcf || b === 0xd3) {
      this.pos++;
      const hi = this.u32();
      const lo = this.u32();
      const big = (BigInt(hi) << 32n) | BigInt(lo);
      const v = b === 0xd3 ? BigInt.asIntN(64, big) : big;
      return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
    }
    if (b <= 0x7f || b >= 0xe0 || (b >= 0xcc && b <= 0xd2)) return this.int('value');
    const strLen = this.tryStrHead();
    if (strLen >= 0) return this.utf8Of(strLen);
    const binLen = this.tryBinHead();
    if (binLen >= 0) {
      this.need(binLen);
      const bytes = this.buf.slice(this.pos, this.pos + binLen);
      this.pos += binLen;
      return bytes;
    }
    const arrLen = this.tryArrayHead();
    if (arrLen >= 0) {
      const out: MsgpackValue[] = [];
      for (let i = 0; i < arrLen; i++) out.push(this.value(depth + 1));
      return out;
    }
    const mapLen = this.tryMapHead();
    if (mapLen >= 0) {
      // No prototype: a key named "__proto__" stays an ordinary entry instead of vanishing.
      const out = Object.create(null) as { [key: string]: MsgpackValue };
      for (let i = 0; i < mapLen; i++) {
        const k = this.value(depth + 1);
        const key = typeof k === 'string' ? k : typeof k === 'bigint' || typeof k === 'number' ? String(k) : JSON.stringify(k);
        out[key] = this.value(depth + 1);
      }
      return out;
    }
    // Extension types carry nothing kvix understands; keep the event usable without them.
    const start = this.pos;
    this.skip();
    throw new WrongType(`unsupported msgpack type 0x${b.toString(16)} at byte ${start}`);
  }
}
