import { entriesAt, type IndexObserver, type PodEntry } from '@kvix/kv-index';
import { ceiling, startRedis, waitFor, type PrivateServer } from '@kvix/test-support';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisIndex, type RedisIndexConfig } from '../src/index.js';

let redis: PrivateServer;
let raw: Redis;
const open: RedisIndex[] = [];
let n = 0;

beforeAll(async () => {
  redis = await startRedis();
  raw = new Redis({ port: redis.port, host: '127.0.0.1' });
});
afterAll(async () => {
  raw?.disconnect();
  await redis?.dispose();
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((i) => i.close()));
});

async function index(config: Partial<RedisIndexConfig> = {}): Promise<RedisIndex> {
  // A command budget a loaded machine meets (the default, 1 s, is a router's); timeouts are tested in connection.test.ts.
  const i = new RedisIndex({ url: redis.url, keyPrefix: `b${++n}:`, sweepIntervalMs: 0, commandTimeoutMs: ceiling(5_000), ...config });
  open.push(i);
  await i.ready();
  return i;
}

const gpu = (pod: string): PodEntry => ({ pod, tier: 'gpu', speculative: false });
const spec = (pod: string): PodEntry => ({ pod, tier: 'gpu', speculative: true });
const range = (from: number, count: number): BigUint64Array => BigUint64Array.from({ length: count }, (_, i) => BigInt(from + i) * 0x9e3779b97f4a7c15n & 0xffffffffffffffffn);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Calls per command the server executed since the last reset (scripts' inner calls included). */
async function commandCalls(): Promise<Record<string, number>> {
  const info = (await raw.call('INFO', 'commandstats')) as string;
  const out: Record<string, number> = {};
  for (const m of info.matchAll(/^cmdstat_([a-z|_-]+):calls=(\d+)/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

describe('round trips', () => {
  it('looks a 128-key prompt up in one server call that stops where every run has ended', async () => {
    const idx = await index();
    const prompt = range(1, 128);
    await idx.add(null, prompt.subarray(0, 10), [gpu('a:1'), gpu('b:1')]);
    await idx.add(null, prompt.subarray(20, 128), [gpu('a:1')]);
    await raw.config('RESETSTAT');
    const res = await idx.lookup(prompt);
    const calls = await commandCalls();
    expect(res.keyCount).toBe(10);
    expect(calls['evalsha']).toBe(1);
    // Keys 0..10 read (key 10 is where nobody continues), not the 118 after it.
    expect(calls['hkeys']).toBe(11);
    expect(calls['config|resetstat'] ?? 0).toBeLessThanOrEqual(1);
    // The script also sweeps expired speculation first: when a 100 ms expiry bucket has passed since
    // the last call it records the sweep position (one HSET, inside the same call).
    expect(calls['hset'] ?? 0).toBeLessThanOrEqual(1);
    expect(Object.keys(calls).filter((c) => !['evalsha', 'hkeys', 'hmget', 'time', 'hset', 'config|resetstat'].includes(c))).toEqual([]);
  });

  it('adds a whole event (keys, entries and engine map) in one server call', async () => {
    const idx = await index();
    await raw.config('RESETSTAT');
    await idx.add(range(500, 16), range(600, 16), [gpu('a:1')]);
    expect((await commandCalls())['evalsha']).toBe(1);
  });
});

describe('clear(pod)', () => {
  it('touches only that pod\'s keys and never scans the keyspace when no other writer shares the database', async () => {
    // Speculation that outlives the test however slow the machine: this is about clear, not expiry.
    const idx = await index({ clearBatch: 100, sharedWithForeignWriters: false, speculativeTtlMs: 600_000 });
    const shared = range(1000, 300);
    await idx.add(range(5000, 300), shared, [gpu('a:1'), gpu('b:1')]);
    await idx.add(null, shared.subarray(0, 50), [{ pod: 'a:1', tier: 'cpu', speculative: false }, spec('c:1')]);
    // An unrelated crowd in the same database: clear must not walk it.
    const crowd = await index();
    await crowd.add(null, range(90_000, 5000), [gpu('z:1')]);
    const before = await raw.hgetall(`b${n - 1}:${shared[0]!.toString()}`);
    await raw.config('RESETSTAT');
    expect(await idx.clear('a:1')).toBe(350);
    const calls = await commandCalls();
    expect(calls['scan']).toBeUndefined();
    expect(calls['keys']).toBeUndefined();
    // Three steps of ≤100 keys each (HSCAN COUNT is a hint: allow one more), one HDEL per entry and per key of the pod index.
    expect(calls['evalsha']).toBeGreaterThanOrEqual(3);
    expect(calls['evalsha']).toBeLessThanOrEqual(5);
    expect(calls['hdel']).toBeLessThanOrEqual(350 + 300 + 10);
    const after = await raw.hgetall(`b${n - 1}:${shared[0]!.toString()}`);
    expect(Object.keys(after).sort()).toEqual(Object.keys(before).filter((f) => !f.includes('"a:1"')).sort());
    const res = await idx.lookup(shared, { earlyStop: false });
    expect(entriesAt(res, 0).map((e) => e.pod).sort()).toEqual(['b:1', 'c:1']);
    expect(entriesAt(res, 299).map((e) => e.pod)).toEqual(['b:1']);
    expect((await crowd.lookup(range(90_000, 5000))).keyCount).toBe(5000);
    expect(await idx.podCounts()).toEqual([{ pod: 'b:1', entries: 300, speculative: 0 }, { pod: 'c:1', entries: 50, speculative: 50 }]);
  });
});

describe('shared state between replicas', () => {
  it('a speculative entry one replica adds is seen by another, and expires for both on the server\'s clock', async () => {
    const prefix = `shared${++n}:`;
    const expiredSeen: string[] = [];
    const observer: IndexObserver = { speculationExpired: (pod, count) => expiredSeen.push(`${pod}:${count}`) };
    // Long enough to be seen before it expires on a loaded machine; the expiry is then awaited.
    const ttl = ceiling(1_000);
    const a = await index({ keyPrefix: prefix, speculativeTtlMs: ttl });
    const b = await index({ keyPrefix: prefix, speculativeTtlMs: ttl, observer, sweepIntervalMs: 50 });
    const r = range(1, 4);
    await a.add(null, r, [spec('10.0.0.1:8000')]);
    expect(entriesAt(await b.lookup(r), 3)).toEqual([spec('10.0.0.1:8000')]);
    await sleep(ttl);
    await waitFor(async () => expiredSeen.length > 0, 5000, "B's sweep of the expired speculation");
    expect((await b.lookup(r)).keyCount).toBe(0);
    expect((await a.lookup(r)).keyCount).toBe(0);
    expect((await a.stats()).speculative).toMatchObject({ active: 0, expired: 4 });
    // B's timer swept them (A never sweeps: interval 0): B reports.
    expect(expiredSeen).toEqual(['10.0.0.1:8000:4']);
  });

  it('a real entry one replica adds confirms the speculation another made, with its latency', async () => {
    const prefix = `shared${++n}:`;
    const confirmed: [string, number][] = [];
    const a = await index({ keyPrefix: prefix, speculativeTtlMs: 600_000 });
    const b = await index({ keyPrefix: prefix, speculativeTtlMs: 600_000, observer: { speculationConfirmed: (pod, ms) => confirmed.push([pod, ms]) } });
    const r = range(10, 2);
    await a.add(null, r, [spec('p:1')]);
    await sleep(30);
    await b.add(null, r.subarray(0, 1), [gpu('p:1')]);
    expect(confirmed).toHaveLength(1);
    expect(confirmed[0]![0]).toBe('p:1');
    expect(confirmed[0]![1]).toBeGreaterThanOrEqual(25);
    const res = await a.lookup(r);
    expect([entriesAt(res, 0), entriesAt(res, 1)]).toEqual([[gpu('p:1')], [spec('p:1')]]);
  });

  it('a repeated routing decision extends the speculation', async () => {
    // Long enough that the second decision lands well before the first expires on a loaded machine.
    const idx = await index({ speculativeTtlMs: ceiling(1_000) });
    const r = range(20, 1);
    const expiresAt = async (): Promise<number> => {
      const line = (await raw.hget(`b${n}:kvix:pod:p:1`, r[0]!.toString())) ?? '';
      return Number(line.split('\t')[2]);
    };
    await idx.add(null, r, [spec('p:1')]);
    const first = await expiresAt();
    await sleep(50);
    await idx.add(null, r, [spec('p:1')]);
    expect(await expiresAt()).toBeGreaterThanOrEqual(first + 40);
    expect(entriesAt(await idx.lookup(r), 0)).toEqual([spec('p:1')]);
    await waitFor(async () => (await idx.lookup(r)).keyCount === 0, 5000, 'the extended speculation to expire');
    expect((await idx.stats()).speculative).toMatchObject({ active: 0, expired: 1 });
  });

  it('neither counts nor dumps expired speculation when no sweep timer runs and nothing else calls', async () => {
    // Two indexes (own prefixes), so one call's sweep cannot do the other's work.
    const counted = await index({ speculativeTtlMs: 100 });
    const dumped = await index({ speculativeTtlMs: 100 });
    await counted.add(null, range(30, 2), [spec('p:1')]);
    await dumped.add(null, range(30, 2), [spec('p:1')]);
    await sleep(500); // past the TTL and its 100 ms expiry bucket
    expect(await counted.podCounts()).toEqual([]);
    expect(await dumped.dumpPod('p:1', 0, 10)).toEqual({ total: 0, items: [] });
  });
});

describe('config', () => {
  it('rejects a bad URL or option with a typed error', () => {
    expect(() => new RedisIndex({ url: 'http://x:1' })).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG' }));
    expect(() => new RedisIndex({ url: redis.url, speculativeTtlMs: 0 })).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG' }));
  });
});
