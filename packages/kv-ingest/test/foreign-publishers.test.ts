import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { RequestKeyHasher, requestBlockExtras } from '@kvix/block-keys';
import { EventApplier, InMemoryIndex, entriesAt } from '@kvix/kv-index';
import { freePorts, readVectorJson, repoRoot, waitFor } from '@kvix/test-support';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { IngestMetrics, Ingestor, parseIngestConfig, type EndpointEntry } from '../src/index.js';

/**
 * Engines kvix did not write, on the wire: a Python process declares vLLM 0.34's and SGLang 0.5's
 * event structs as those projects do (tools/foreign-publishers/publish.py), encodes them with
 * msgspec and publishes over real ZeroMQ; the ingestor subscribes as it would to the engines, and
 * the index must hold exactly the request keys of what was published.
 *
 * Needs Python with msgspec and pyzmq: scripts/install-prerequisites.sh (which `.ci/run` runs) puts
 * them in the checkout's .venv-tools; KVIX_PYTHON names another interpreter.
 */

const TOOLS_PYTHON = join(repoRoot(), '.venv-tools', 'bin', 'python');
const PYTHON = process.env['KVIX_PYTHON'] ?? (existsSync(TOOLS_PYTHON) ? TOOLS_PYTHON : 'python3');
const SCRIPT = join(repoRoot(), 'tools', 'foreign-publishers', 'publish.py');
const MODEL = 'Qwen/Qwen3-0.6B';
const B = 16;

interface WireEvent {
  type: 'BlockStored' | 'BlockRemoved' | 'AllBlocksCleared';
  [field: string]: unknown;
}
interface Batch {
  ts: number;
  rank: number | null;
  events: WireEvent[];
}

const tokens = (n: number, seed: number): number[] => Array.from({ length: n }, (_, i) => 1000 + ((i * 7919 + seed * 104729) % 150_000));
const hashes = (base: number, n: number): string[] => Array.from({ length: n }, (_, i) => String(BigInt(base + i) + (1n << 63n)));

function python(doc: unknown, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [SCRIPT], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`publish.py exited ${code}: ${err}`));
    });
    child.stdin.end(JSON.stringify(doc));
  });
}

const stopping: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const s of stopping.splice(0)) await s();
});

beforeAll(() => {
  const probe = spawnSync(PYTHON, ['-c', 'import msgspec, zmq'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    throw new Error(`${PYTHON} cannot import msgspec and zmq (a real part this test needs: run scripts/install-prerequisites.sh, or set KVIX_PYTHON): ${probe.stderr || probe.error?.message}`);
  }
});

describe('foreign publishers (Python, msgspec, real ZeroMQ)', () => {
  it("declares vLLM 0.34's and SGLang 0.5's structs exactly: they encode every shared vector byte for byte", async () => {
    for (const [file, engine] of [
      ['vllm-0.34-event-frames.json', 'vllm'],
      ['sglang-0.5-event-frames.json', 'sglang'],
    ] as const) {
      const frames = (readVectorJson(file) as { frames: { name: string; payload_hex: string; expected: { ts: number; data_parallel_rank: number | null; events: WireEvent[] } }[] }).frames.filter((f) => !f.name.includes('bytes'));
      const out = await python({ mode: 'encode', engine, batches: frames.map((f) => ({ ts: f.expected.ts, rank: f.expected.data_parallel_rank, events: f.expected.events })) });
      expect(out.trim().split('\n')).toEqual(frames.map((f) => f.payload_hex));
    }
  });

  it('indexes exactly what vLLM 0.34, LMCache (in-process and MP) and SGLang pods published, counting no lost batch', async () => {
    const ports = await freePorts(8);
    const pods: (EndpointEntry & { first: number })[] = [
      { name: 'vllm', address: '127.0.0.1', port: ports[0]!, eventPort: ports[1]!, replayPort: null, model: MODEL, engine: 'vllm', first: 5 },
      { name: 'lmcache-inproc', address: '127.0.0.1', port: ports[2]!, eventPort: ports[3]!, replayPort: null, model: MODEL, engine: 'vllm', lmcache: 'inproc', first: 1 },
      { name: 'lmcache-mp', address: '127.0.0.1', port: ports[4]!, eventPort: ports[5]!, replayPort: null, model: MODEL, engine: 'vllm', lmcache: 'mp', first: 0 },
      { name: 'sglang', address: '127.0.0.1', port: ports[6]!, eventPort: ports[7]!, replayPort: null, model: MODEL, engine: 'sglang', first: 3 },
    ];
    const index = new InMemoryIndex({ sweepIntervalMs: 0 });
    const hasher = new RequestKeyHasher({ blockSize: B });
    const registry = new Registry();
    const metrics = new IngestMetrics(registry);
    const ingestor = new Ingestor({
      config: parseIngestConfig({ pods: pods.map(({ first: _f, ...p }) => p), tailCheckMs: 0, readinessTimeoutMs: 1000 }),
      applier: new EventApplier(index, { hasher, observer: metrics.applierObserver() }),
      metrics,
      logger: pino({ level: 'silent' }),
    });
    await ingestor.start();
    stopping.push(() => ingestor.stop());
    const id = (p: EndpointEntry): string => `127.0.0.1:${p.port}`;

    // vLLM 0.34: a prompt of 4 blocks and a decode block (with lookahead tokens and a session), then its last block evicted.
    const a = tokens(80, 1);
    const ha = hashes(100, 5);
    const vllm: Batch[] = [
      { ts: 1, rank: 0, events: [{ type: 'BlockStored', block_hashes: ha.slice(0, 4), parent_block_hash: null, token_ids: a.slice(0, 64), block_size: 16, lora_id: null, medium: 'GPU', lora_name: null, group_idx: 0, session_id: 's1' }] },
      { ts: 2, rank: 0, events: [{ type: 'BlockStored', block_hashes: ha.slice(4), parent_block_hash: ha[3], token_ids: a.slice(64), block_size: 16, lora_id: null, medium: 'GPU', lora_name: null, group_idx: 0, lookahead_token_ids: [[7]] }] },
      { ts: 3, rank: 0, events: [{ type: 'BlockRemoved', block_hashes: [ha[4]], medium: 'GPU', group_idx: 0 }] },
    ];

    // LMCache in-process (chunks of 64 through vLLM's connector): a 4-chunk prompt stored from chunk 0,
    // then a prompt sharing its first 2 chunks whose store starts at chunk 2 (parent 0), after vLLM's own GPU events for it.
    const p1 = tokens(256, 2);
    const p2 = [...p1.slice(0, 128), ...tokens(128, 3)];
    const c1 = hashes(200, 4);
    const c2 = hashes(300, 2);
    const g2 = hashes(400, 16);
    const chunk = (prompt: number[], c: number, hash: string, parent: string | null): WireEvent => ({ type: 'BlockStored', block_hashes: [hash], parent_block_hash: parent, token_ids: prompt.slice(c * 64, c * 64 + 65), block_size: 64, lora_id: null, medium: 'cpu', lora_name: null });
    const lmInproc: Batch[] = [
      { ts: 1, rank: 0, events: [0, 1, 2, 3].map((c) => chunk(p1, c, c1[c]!, c === 0 ? null : c1[c - 1]!)) },
      {
        ts: 2,
        rank: 0,
        events: [
          { type: 'BlockStored', block_hashes: g2, parent_block_hash: null, token_ids: p2, block_size: 16, lora_id: null, medium: 'GPU', lora_name: null, group_idx: 0 },
          chunk(p2, 2, c2[0]!, '0'),
          chunk(p2, 3, c2[1]!, c2[0]!),
        ],
      },
    ];

    // LMCache MP: exact chunks with real parents, a "CPU" eviction, then the resync removal of every announced chunk.
    const m1 = tokens(192, 4);
    const mh = hashes(500, 3);
    const lmMp: Batch[] = [
      { ts: 1, rank: 0, events: [0, 1, 2].map((c) => ({ type: 'BlockStored', block_hashes: [mh[c]], parent_block_hash: c === 0 ? null : mh[c - 1], token_ids: m1.slice(c * 64, (c + 1) * 64), block_size: 64, lora_id: null, medium: 'CPU', lora_name: null })) },
      { ts: 2, rank: 0, events: [{ type: 'BlockRemoved', block_hashes: [mh[2]], medium: 'CPU' }] },
    ];
    const m2 = tokens(128, 5);
    const mh2 = hashes(600, 2);
    lmMp.push({ ts: 3, rank: 0, events: [0, 1].map((c) => ({ type: 'BlockStored', block_hashes: [mh2[c]], parent_block_hash: c === 0 ? null : mh2[c - 1], token_ids: m2.slice(c * 64, (c + 1) * 64), block_size: 64, lora_id: null, medium: 'CPU', lora_name: null })) });
    lmMp.push({ ts: 4, rank: 0, events: [{ type: 'BlockRemoved', block_hashes: [...mh2], medium: 'CPU' }] });

    // SGLang: a salted chain (cache_salt on every event) and an unsalted one, signed hashes, pages of 16.
    const s = tokens(48, 6);
    const sh = hashes(700, 3);
    const uh = hashes(800, 3);
    const page = (hs: string[], i: number, salt: string | null): WireEvent => ({ type: 'BlockStored', block_hashes: [hs[i]], parent_block_hash: i === 0 ? null : hs[i - 1], token_ids: s.slice(i * 16, (i + 1) * 16), block_size: 16, lora_id: null, medium: 'GPU', cache_salt: salt });
    const sglang: Batch[] = [
      { ts: 1, rank: 0, events: [page(sh, 0, 'tenant-a'), page(sh, 1, 'tenant-a'), page(sh, 2, 'tenant-a')] },
      { ts: 2, rank: 0, events: [page(uh, 0, null), page(uh, 1, null)] },
    ];

    const plans: [EndpointEntry & { first: number }, Batch[], 'vllm' | 'sglang'][] = [
      [pods[0]!, vllm, 'vllm'],
      [pods[1]!, lmInproc, 'vllm'],
      [pods[2]!, lmMp, 'vllm'],
      [pods[3]!, sglang, 'sglang'],
    ];
    await Promise.all(plans.map(([p, batches, engine]) => python({ mode: 'publish', engine, endpoint: `tcp://127.0.0.1:${p.eventPort}`, topic: `kv@${id(p)}@${MODEL}`, first_seq: p.first, batches })));
    await waitFor(
      () => plans.every(([p, batches]) => ingestor.podStates().find((st) => st.id === id(p))?.stream.lastSeq === String(p.first + batches.length - 1)),
      20_000,
      'every published batch applied',
    );

    /** Per request block of the prompt: the tiers the pod holds it in. */
    const tiersOf = async (p: EndpointEntry, prompt: number[], salt?: string): Promise<string[][]> => {
      const extras = salt ? requestBlockExtras({ tokenCount: prompt.length, blockSize: B, cacheSalt: salt }) : null;
      const keys = hasher.keys(prompt, MODEL, { extras });
      const result = await index.lookup(keys, { earlyStop: false, pods: [id(p)] });
      return Array.from({ length: keys.length }, (_, i) => entriesAt(result, i).map((e) => e.tier).sort());
    };
    const gpu = ['gpu'];
    expect(await tiersOf(pods[0]!, a)).toEqual([gpu, gpu, gpu, gpu, []]);
    // p1's first 8 blocks are p2's too, which vLLM's GPU events announced.
    expect(await tiersOf(pods[1]!, p1)).toEqual([...Array.from({ length: 8 }, () => ['cpu', 'gpu']), ...Array.from({ length: 8 }, () => ['cpu'])]);
    // Chunks 2–3 of the second prompt were stored with parent 0: indexed through vLLM's own GPU events of the prompt.
    expect(await tiersOf(pods[1]!, p2)).toEqual([...Array.from({ length: 8 }, () => ['cpu', 'gpu']), ...Array.from({ length: 8 }, () => ['cpu', 'gpu'])]);
    expect(await tiersOf(pods[2]!, m1)).toEqual([...Array.from({ length: 8 }, () => ['cpu']), [], [], [], []]);
    expect(await tiersOf(pods[2]!, m2)).toEqual([[], [], [], [], [], [], [], []]);
    expect(await tiersOf(pods[3]!, s, 'tenant-a')).toEqual([gpu, gpu, gpu]);
    expect(await tiersOf(pods[3]!, s)).toEqual([gpu, gpu, []]);

    // First seqs of 5, 1, 0 and 3, no replay endpoint: nothing was lost on kvix's side.
    const lost = (await registry.getSingleMetric('kvix_ingest_lost_batches_total')!.get()).values.reduce((n, v) => n + v.value, 0);
    expect(lost).toBe(0);
    expect(ingestor.podStates().map((st) => st.engine.inferredRules)).toEqual([[], [], [], []]);
  });
});
