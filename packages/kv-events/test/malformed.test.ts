import { encode } from '@msgpack/msgpack';
import { describe, expect, it } from 'vitest';
import { EventDecodeError, decodeEventBatch, encodeEventBatch, parseEventMessage, parseReplayReply } from '../src/index.js';

const pack = (v: unknown): Uint8Array => encode(v, { useBigInt64: true });
const good = ['BlockStored', [1n, 2n], null, Array.from({ length: 32 }, (_, i) => i), 16, null, 'GPU', null, null, 0, 'full_attention', null];

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof EventDecodeError) return err.code;
    throw err;
  }
  return undefined;
}

describe('one bad event never costs the rest of its batch', () => {
  it.each([
    ['an unknown tag', ['BlockEvicted', [1n]], /unknown event type "BlockEvicted"/],
    ['a string where hashes belong', ['BlockStored', 'nope', null, [], 16], /block_hashes is not an array/],
    ['an empty bytes hash', ['BlockRemoved', [new Uint8Array(0)]], /empty byte string/],
    ['a float hash', ['BlockRemoved', [1.5]], /neither an integer nor bytes/],
    ['a negative token id', ['BlockStored', [1n], null, [1, -2], 16], /token_ids\[1\] = -2/],
    ['a token id above 2^32', ['BlockStored', [1n], null, [2n ** 33n], 16], /not an unsigned 32-bit token id/],
    ['a number instead of an event', 42, /neither an array nor a map/],
    ['a map without a type', { block_hashes: [1n] }, /no "type" key/],
    ['a non-string tag', [7, [1n]], /tag/],
    ['extra_keys entries that are not lists', ['BlockStored', [1n], null, [], 0, null, null, null, ['x']], /extra_keys\[0\]/],
  ])('skips %s with its index and reason', (_what, bad, reason) => {
    const batch = decodeEventBatch(pack([1, [good, bad, good], 0]));
    expect(batch.events).toHaveLength(2);
    expect(batch.skipped).toHaveLength(1);
    expect(batch.skipped[0]!.index).toBe(1);
    expect(batch.skipped[0]!.reason).toMatch(reason);
  });

  it('names the event type of a skipped event when it could read it', () => {
    const batch = decodeEventBatch(pack([1, [['BlockRemoved', 'x']], 0]));
    expect(batch.skipped).toEqual([{ index: 0, type: 'BlockRemoved', reason: 'BlockRemoved: block_hashes is not an array' }]);
  });

  it('tolerates a malformed deprecated lora_id instead of dropping the event', () => {
    const withOddLora = [...good];
    withOddLora[5] = 'not-an-int';
    expect(decodeEventBatch(pack([1, [withOddLora], 0])).skipped).toEqual([]);
  });
});

describe('a payload that is not a batch is a typed error', () => {
  it('rejects non-batches with a stable code', () => {
    expect(codeOf(() => decodeEventBatch(new Uint8Array(0)))).toBe('NOT_A_BATCH');
    expect(codeOf(() => decodeEventBatch(pack('hello')))).toBe('NOT_A_BATCH');
    expect(codeOf(() => decodeEventBatch(pack([1])))).toBe('NOT_A_BATCH');
    expect(codeOf(() => decodeEventBatch(pack(['yesterday', []])))).toBe('BAD_TIMESTAMP');
    expect(codeOf(() => decodeEventBatch(pack([1, 'events'])))).toBe('BAD_EVENTS');
    expect(codeOf(() => decodeEventBatch(pack([1, [], 'rank'])))).toBe('BAD_RANK');
    expect(codeOf(() => decodeEventBatch(new Uint8Array([...pack([1, [], 0]), 0x00])))).toBe('TRAILING_BYTES');
    expect(codeOf(() => decodeEventBatch(new Uint8Array([0x93, 0xc1])))).toBeDefined();
  });

  it('reports every truncation of a real batch as TRUNCATED, never as a crash', () => {
    const payload = encodeEventBatch(decodeEventBatch(pack([1.25, [good, ['BlockRemoved', [1n, 2n], 'GPU', 0]], 0])));
    for (let len = 1; len < payload.length; len++) {
      expect(codeOf(() => decodeEventBatch(payload.subarray(0, len)))).toBe('TRUNCATED');
    }
  });

  it('reports a forged 32-bit element count as TRUNCATED instead of trying to allocate it', () => {
    const head = [0x93, 0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0x91];
    const forged = [0xdd, 0xff, 0xff, 0xff, 0xff];
    // hashes, token ids, the events list and a map event, each claiming 2^32-1 elements
    const removed = [0x92, 0xac, ...new TextEncoder().encode('BlockRemoved'), ...forged];
    const stored = [0x97, 0xab, ...new TextEncoder().encode('BlockStored'), 0x91, 0x01, 0xc0, ...forged];
    expect(codeOf(() => decodeEventBatch(new Uint8Array([...head, ...removed])))).toBe('TRUNCATED');
    expect(codeOf(() => decodeEventBatch(new Uint8Array([...head, ...stored])))).toBe('TRUNCATED');
    expect(codeOf(() => decodeEventBatch(new Uint8Array([...head.slice(0, -1), ...forged])))).toBe('TRUNCATED');
    expect(codeOf(() => decodeEventBatch(new Uint8Array([...head, 0xdf, 0x7f, 0xff, 0xff, 0xff])))).toBe('TRUNCATED');
  });

  it('throws nothing but EventDecodeError on random bytes', () => {
    let seed = 12345;
    const rand = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed >>> 16;
    };
    for (let i = 0; i < 5000; i++) {
      const bytes = new Uint8Array(1 + (rand() % 64));
      for (let k = 0; k < bytes.length; k++) bytes[k] = rand() & 0xff;
      // Start most inputs like a batch so the fuzz reaches the event decoder.
      if (i % 2 === 0) bytes[0] = 0x93;
      try {
        decodeEventBatch(bytes);
      } catch (err) {
        expect(err).toBeInstanceOf(EventDecodeError);
      }
    }
  });
});

describe('ZeroMQ frames', () => {
  it('rejects a message with the wrong frame count or a short sequence frame', () => {
    expect(codeOf(() => parseEventMessage([new Uint8Array(1), new Uint8Array(8)]))).toBe('BAD_FRAMES');
    expect(codeOf(() => parseEventMessage([new Uint8Array(1), new Uint8Array(4), new Uint8Array(1)]))).toBe('BAD_SEQ');
  });

  it('accepts replay replies with or without the topic frame', () => {
    const seq = new Uint8Array([0, 0, 0, 0, 0, 0, 0, 9]);
    const payload = new Uint8Array([1, 2]);
    const topic = new TextEncoder().encode('kv@1.2.3.4:8000@m');
    expect(parseReplayReply([new Uint8Array(0), seq, payload])).toMatchObject({ topic: null, seq: 9n, end: false });
    expect(parseReplayReply([new Uint8Array(0), topic, seq, payload])).toMatchObject({ topic: 'kv@1.2.3.4:8000@m', seq: 9n });
    expect(parseReplayReply([topic, seq, payload])).toMatchObject({ topic: 'kv@1.2.3.4:8000@m', seq: 9n });
  });
});
