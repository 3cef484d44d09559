import { readVectorJson } from '@kvix/test-support';
import { describe, expect, it } from 'vitest';
import { batchToDebugJson, decodeEventBatch, encodeEventBatch, parseEventMessage, parseReplayReply, tierOfEvent, tierOfMedium, type KvEvent } from '../src/index.js';
import { fromHex, toHex } from './vectors.js';

interface EngineFrame {
  name: string;
  payload_hex: string;
  expected: { ts: number; data_parallel_rank: number | null; events: Record<string, unknown>[] };
}

const vllm034 = readVectorJson('vllm-0.34-event-frames.json') as {
  frames: EngineFrame[];
  zmq_capture: { live_frames: string[][]; replay_request: string[]; replay_reply_frames: string[][] };
};
const sglang = readVectorJson('sglang-0.5-event-frames.json') as { frames: EngineFrame[] };

const snake: Record<string, string> = {
  blockHashes: 'block_hashes',
  parentBlockHash: 'parent_block_hash',
  tokenIds: 'token_ids',
  blockSize: 'block_size',
  loraId: 'lora_id',
  medium: 'medium',
  loraName: 'lora_name',
  extraKeys: 'extra_keys',
  groupIdx: 'group_idx',
  kvCacheSpecKind: 'kv_cache_spec_kind',
  kvCacheSpecSlidingWindow: 'kv_cache_spec_sliding_window',
  locality: 'locality',
  ownership: 'ownership',
  sessionId: 'session_id',
  lookaheadTokenIds: 'lookahead_token_ids',
  cacheSalt: 'cache_salt',
};

/** The decoded event in the vectors' shape: snake_case fields, 64-bit values as decimal strings. */
function asVector(ev: KvEvent, fields: readonly string[]): Record<string, unknown> {
  const json = JSON.parse(JSON.stringify(batchToDebugJson({ ts: 0, dataParallelRank: null, events: [ev], skipped: [] }).events)) as Record<string, unknown>[];
  const out: Record<string, unknown> = { type: ev.type };
  for (const [camel, value] of Object.entries(json[0]!)) {
    const name = snake[camel];
    if (name !== undefined && fields.includes(name)) out[name] = value;
  }
  return out;
}

function checkFrame(f: EngineFrame): void {
  const batch = decodeEventBatch(fromHex(f.payload_hex));
  expect(batch.skipped).toEqual([]);
  expect(batch.ts).toBe(f.expected.ts);
  expect(batch.dataParallelRank).toBe(f.expected.data_parallel_rank);
  expect(batch.events.map((ev, i) => asVector(ev, Object.keys(f.expected.events[i]!)))).toEqual(f.expected.events);
  expect(toHex(encodeEventBatch(batch))).toBe(f.payload_hex);
}

describe('vLLM 0.34 event frames (shared vectors)', () => {
  it.each(vllm034.frames.map((f) => [f.name, f] as const))('decodes %s with every new field and re-encodes it byte for byte', (_name, f) => checkFrame(f));

  it('reads the live capture and its replay exchange (topic in the reply, end marker with an empty topic)', () => {
    const cap = vllm034.zmq_capture;
    cap.live_frames.forEach((frames, i) => {
      const msg = parseEventMessage(frames.map(fromHex));
      expect(msg.seq).toBe(BigInt(i));
      expect(toHex(encodeEventBatch(decodeEventBatch(msg.payload)))).toBe(frames[2]);
    });
    const replies = cap.replay_reply_frames.map((frames) => parseReplayReply(frames.map(fromHex)));
    expect(replies.map((r) => [r.seq, r.end])).toEqual([
      [1n, false],
      [0xffffffffffffffffn, true],
    ]);
    expect(replies[0]!.topic).toBe('kv@10.0.0.7:8000@Qwen/Qwen3-32B');
  });

  it('surfaces locality, session and lookahead tokens in the decode view', () => {
    const frame = (name: string) => decodeEventBatch(fromHex(vllm034.frames.find((f) => f.name === name)!.payload_hex));
    const offload = batchToDebugJson(frame('offload-cpu-self-describing')).events as Record<string, unknown>[];
    expect(offload[0]).toMatchObject({ medium: 'CPU', locality: 'LOCAL', ownership: null, tier: 'cpu' });
    const look = batchToDebugJson(frame('gpu-store-lookahead-session')).events as Record<string, unknown>[];
    expect(look[0]).toMatchObject({ sessionId: 'sess-1', lookaheadTokenIds: [[46200], [134942], [3546]], tier: 'gpu' });
  });
});

describe('SGLang 0.5 event frames (shared vectors)', () => {
  it.each(sglang.frames.map((f) => [f.name, f] as const))('decodes %s (signed hashes normalised) and re-encodes it byte for byte', (_name, f) => checkFrame(f));

  it("recognises SGLang's map layout and its signed hashes", () => {
    const ev = decodeEventBatch(fromHex(sglang.frames[0]!.payload_hex)).events[0]!;
    expect(ev.encoding).toEqual({ layout: 'map', dialect: 'sglang' });
    expect(ev.type === 'BlockStored' && ev.signedHashes).toBe(true);
    expect(ev.type === 'BlockStored' && ev.blockHashes[0]).toBe(BigInt.asUintN(64, -6336882428233488311n));
  });

  it('keeps a salted chain\'s cache_salt and session_id and writes them in SGLang\'s field order', () => {
    const base = decodeEventBatch(fromHex(sglang.frames[0]!.payload_hex));
    const ev = base.events[0]!;
    if (ev.type !== 'BlockStored') throw new Error('expected BlockStored');
    const salted = { ...base, events: [{ ...ev, cacheSalt: 'tenant-a', sessionId: 's1', loraName: 'sql' }] };
    const again = decodeEventBatch(encodeEventBatch(salted)).events[0]!;
    expect(again).toMatchObject({ cacheSalt: 'tenant-a', sessionId: 's1', loraName: 'sql', encoding: { layout: 'map', dialect: 'sglang' } });
    const events = batchToDebugJson(decodeEventBatch(encodeEventBatch(salted))).events as Record<string, unknown>[];
    const keys = Object.keys(events[0]!);
    expect(keys).toContain('cacheSalt');
  });
});

describe('media and tiers', () => {
  it.each([
    [null, 'gpu'],
    ['GPU', 'gpu'],
    ['CPU', 'cpu'],
    ['cpu', 'cpu'],
    ['CPU_PINNED', 'cpu'],
    ['LocalCPUBackend', 'cpu'],
    ['DISK', 'disk'],
    ['LocalDiskBackend', 'disk'],
    ['STORAGE', 'storage'],
    ['EXTERNAL', 'storage'],
    ['NVME', 'nvme'],
  ] as const)('medium %s is tier %s', (medium, tier) => expect(tierOfMedium(medium)).toBe(tier));

  it('puts a REMOTE copy in the remote tier whatever its medium', () => {
    expect(tierOfEvent({ medium: 'GPU', locality: 'REMOTE' })).toBe('remote');
    expect(tierOfEvent({ medium: 'CPU', locality: 'LOCAL' })).toBe('cpu');
  });
});
