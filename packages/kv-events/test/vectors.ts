import { readVectorJson } from '@kvix/test-support';

export interface FrameVector {
  name: string;
  layout: string;
  payload_hex: string;
  decoded_generic_msgpack: unknown;
}

export interface ZmqCapture {
  topic: string;
  live_messages: { frames_hex: string[]; seq: number; payload_equals_frame: string[] }[];
  replay_request_frames_hex_as_sent_by_DEALER: string[];
  replay_reply_messages_hex_as_seen_by_DEALER: string[][];
}

const doc = readVectorJson('vllm-event-frames.json') as { frames: FrameVector[]; zmq_capture: ZmqCapture };
export const frameVectors = doc.frames;
export const zmqCapture = doc.zmq_capture;

export const fromHex = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex, 'hex'));
export const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

type Generic = unknown;

/** A generic hash value from the vectors (int or {bytes_hex}) as the u64 the spec normalises it to. */
export function normaliseHash(h: Generic): bigint {
  if (typeof h === 'number' || typeof h === 'bigint') return BigInt.asUintN(64, BigInt(h));
  const hexValue = (h as { bytes_hex: string }).bytes_hex;
  return BigInt(`0x${hexValue.slice(-16)}`);
}

const STORED = ['block_hashes', 'parent_block_hash', 'token_ids', 'block_size', 'lora_id', 'medium', 'lora_name', 'extra_keys', 'group_idx', 'kv_cache_spec_kind', 'kv_cache_spec_sliding_window'];
const REMOVED = ['block_hashes', 'medium', 'group_idx'];

/** The fields a generic (vector) event should decode to, independently of the decoder under test. */
export function expectedEvent(g: Generic): Record<string, unknown> {
  let tag: string;
  const fields: Record<string, Generic> = {};
  if (Array.isArray(g)) {
    tag = g[0] as string;
    const names = tag === 'BlockStored' ? STORED : tag === 'BlockRemoved' ? REMOVED : [];
    names.forEach((name, i) => (fields[name] = i + 1 < g.length ? g[i + 1] : null));
  } else {
    const m = g as Record<string, Generic>;
    tag = m['type'] as string;
    for (const [k, v] of Object.entries(m)) if (k !== 'type') fields[k] = v;
  }
  const get = (k: string): Generic => (k in fields ? fields[k] : null);
  if (tag === 'BlockStored') {
    const parent = get('parent_block_hash');
    return {
      type: tag,
      blockHashes: (get('block_hashes') as Generic[]).map(normaliseHash),
      parentBlockHash: parent === null ? null : normaliseHash(parent),
      tokenIds: get('token_ids'),
      blockSize: get('block_size'),
      medium: get('medium'),
      loraName: get('lora_name'),
      extraKeys: get('extra_keys'),
      groupIdx: get('group_idx'),
      kvCacheSpecKind: get('kv_cache_spec_kind'),
      kvCacheSpecSlidingWindow: get('kv_cache_spec_sliding_window'),
    };
  }
  if (tag === 'BlockRemoved') {
    return { type: tag, blockHashes: (get('block_hashes') as Generic[]).map(normaliseHash), medium: get('medium'), groupIdx: get('group_idx') };
  }
  return { type: tag };
}
