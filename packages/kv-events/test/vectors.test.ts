import { describe, expect, it } from 'vitest';
import { decodeEventBatch, encodeEventBatch, parseEventMessage, parseReplayReply, parseTopic, encodeReplayRequest, type KvEvent } from '../src/index.js';
import { expectedEvent, frameVectors, fromHex, toHex, zmqCapture } from './vectors.js';

function comparable(ev: KvEvent): Record<string, unknown> {
  switch (ev.type) {
    case 'BlockStored':
      return {
        type: ev.type,
        blockHashes: Array.from(ev.blockHashes),
        parentBlockHash: ev.parentBlockHash,
        tokenIds: Array.from(ev.tokenIds),
        blockSize: ev.blockSize,
        medium: ev.medium,
        loraName: ev.loraName,
        extraKeys: ev.extraKeys,
        groupIdx: ev.groupIdx,
        kvCacheSpecKind: ev.kvCacheSpecKind,
        kvCacheSpecSlidingWindow: ev.kvCacheSpecSlidingWindow,
      };
    case 'BlockRemoved':
      return { type: ev.type, blockHashes: Array.from(ev.blockHashes), medium: ev.medium, groupIdx: ev.groupIdx };
    default:
      return { type: ev.type };
  }
}

describe('vLLM event frames (shared vectors)', () => {
  it.each(frameVectors.map((f) => [f.name, f] as const))('decodes %s to the expected values', (_name, f) => {
    const batch = decodeEventBatch(fromHex(f.payload_hex));
    const generic = f.decoded_generic_msgpack as unknown[];
    expect(batch.ts).toBe(generic[0]);
    expect(batch.dataParallelRank).toBe(generic.length > 2 ? generic[2] : null);
    expect(batch.skipped).toEqual([]);
    expect(batch.events.map(comparable)).toEqual((generic[1] as unknown[]).map(expectedEvent));
  });

  it.each(frameVectors.map((f) => [f.name, f] as const))('re-encodes %s to the identical bytes', (_name, f) => {
    const batch = decodeEventBatch(fromHex(f.payload_hex));
    expect(toHex(encodeEventBatch(batch))).toBe(f.payload_hex);
  });

  it('keeps raw digests of bytes hashes while normalising them to their last 8 bytes', () => {
    const f = frameVectors.find((v) => v.name === 'array:stored-cpu-bytes-hashes')!;
    const ev = decodeEventBatch(fromHex(f.payload_hex)).events[0]!;
    expect(ev.type).toBe('BlockStored');
    if (ev.type !== 'BlockStored') return;
    expect(ev.blockHashes[0]).toBe(0xc9be22bf706013f6n);
    expect(ev.blockHashDigests?.map(toHex)[0]).toBe('dbd595a8436533a363d0a366314893ec12ef0071f28d939bc9be22bf706013f6');
  });
});

describe('ZeroMQ capture of a live vLLM publisher', () => {
  it('parses every live message: topic, sequence, and a payload that round-trips', () => {
    zmqCapture.live_messages.forEach((m, i) => {
      const msg = parseEventMessage(m.frames_hex.map(fromHex));
      expect(msg.topic).toBe(zmqCapture.topic);
      expect(msg.seq).toBe(BigInt(m.seq));
      expect(msg.seq).toBe(BigInt(i));
      const batch = decodeEventBatch(msg.payload);
      expect(batch.skipped).toEqual([]);
      expect(batch.events.length).toBeGreaterThan(0);
      expect(toHex(encodeEventBatch(batch))).toBe(m.frames_hex[2]);
    });
    expect(parseTopic(zmqCapture.topic)).toEqual({ prefix: 'kv', podId: '10.0.0.1:8000', model: 'Qwen/Qwen3-8B' });
  });

  it('decodes the LoRA event with a parent and the minimal map event from the capture', () => {
    const lora = decodeEventBatch(fromHex(zmqCapture.live_messages[1]!.frames_hex[2]!)).events[0]!;
    expect(lora.type === 'BlockStored' && lora.parentBlockHash).toBe(0x11554b9b44c32e1bn);
    const minimal = decodeEventBatch(fromHex(zmqCapture.live_messages[2]!.frames_hex[2]!)).events[0]!;
    expect(minimal.type === 'BlockStored' && minimal.medium).toBeNull();
  });

  it('builds the replay request frames exactly as the DEALER sent them', () => {
    expect(encodeReplayRequest(1n).map(toHex)).toEqual(zmqCapture.replay_request_frames_hex_as_sent_by_DEALER);
  });

  it('reads the replay reply stream up to its end marker', () => {
    const replies = zmqCapture.replay_reply_messages_hex_as_seen_by_DEALER.map((frames) => parseReplayReply(frames.map(fromHex)));
    expect(replies.map((r) => r.end)).toEqual([false, false, true]);
    expect(replies.slice(0, 2).map((r) => r.seq)).toEqual([1n, 2n]);
    expect(toHex(replies[0]!.payload)).toBe(zmqCapture.live_messages[1]!.frames_hex[2]);
  });
});
