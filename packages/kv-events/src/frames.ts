import { EventDecodeError } from './errors.js';

/** The `seq` of the replay reply that ends a replay (−1 as a signed int64), sent with an empty payload. */
export const REPLAY_END_SEQ = 0xffffffffffffffffn;

const utf8 = new TextDecoder('utf-8');

/** Reads the 8-byte big-endian sequence number frame. */
export function decodeSeq(frame: Uint8Array): bigint {
  if (frame.length !== 8) throw new EventDecodeError('BAD_SEQ', `sequence frame has ${frame.length} bytes; expected 8`);
  return new DataView(frame.buffer, frame.byteOffset, 8).getBigUint64(0);
}

export function encodeSeq(seq: bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt.asUintN(64, seq));
  return out;
}

export interface EventMessage {
  topic: string;
  seq: bigint;
  payload: Uint8Array;
}

/** A live PUB message: exactly three frames `[topic, seq, payload]`. */
export function parseEventMessage(frames: readonly Uint8Array[]): EventMessage {
  if (frames.length !== 3) throw new EventDecodeError('BAD_FRAMES', `message has ${frames.length} frames; expected 3 (topic, seq, payload)`);
  return { topic: utf8.decode(frames[0]), seq: decodeSeq(frames[1]!), payload: frames[2]! };
}

export function encodeEventMessage(topic: string, seq: bigint, payload: Uint8Array): [Uint8Array, Uint8Array, Uint8Array] {
  return [new TextEncoder().encode(topic), encodeSeq(seq), payload];
}

export interface ReplayReply {
  /** The topic, when the engine includes it (vLLM ≥ 0.26, llm-d's simulator). */
  topic: string | null;
  seq: bigint;
  payload: Uint8Array;
  /** True for the end-of-replay marker. */
  end: boolean;
}

/**
 * A replay reply as a DEALER receives it: `["", seq, payload]`, or with the topic,
 * `["", topic, seq, payload]` / `[topic, seq, payload]`. All forms are accepted.
 */
export function parseReplayReply(frames: readonly Uint8Array[]): ReplayReply {
  let parts = frames;
  if (parts.length === 4 || (parts.length === 3 && parts[0]!.length === 0)) {
    if (parts[0]!.length !== 0) throw new EventDecodeError('BAD_FRAMES', 'replay reply of 4 frames must start with an empty delimiter');
    parts = parts.slice(1);
  }
  let topic: string | null = null;
  if (parts.length === 3) {
    topic = utf8.decode(parts[0]);
    parts = parts.slice(1);
  }
  if (parts.length !== 2) throw new EventDecodeError('BAD_FRAMES', `replay reply has ${frames.length} frames; expected 3 or 4`);
  const seq = decodeSeq(parts[0]!);
  const payload = parts[1]!;
  return { topic, seq, payload, end: seq === REPLAY_END_SEQ && payload.length === 0 };
}

/** The request a DEALER sends to replay every buffered batch with seq >= startSeq. */
export function encodeReplayRequest(startSeq: bigint): [Uint8Array, Uint8Array] {
  return [new Uint8Array(0), encodeSeq(startSeq)];
}
