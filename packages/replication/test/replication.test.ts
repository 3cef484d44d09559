import { entriesAt, InMemoryIndex, type KvBlockIndex, type LookupResult, type PodEntry } from '@kvix/kv-index';
import { startNats, waitFor, type PrivateServer } from '@kvix/test-support';
import { connect, headers } from 'nats';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodeOps, encodeOps, indexRole, Replication, ReplicationError, ReplicationSettingsSchema, type InFlightSource, type InFlightTokenSource, type ReplicationSettingsInput } from '../src/index.js';

const logger = pino({ level: 'silent' });
const gpu = (pod: string): PodEntry => ({ pod, tier: 'gpu', speculative: false });
const keys = (from: number, n: number): BigUint64Array => BigUint64Array.from({ length: n }, (_, i) => BigInt.asUintN(64, BigInt(from + i + 1) * 0x9e3779b97f4a7c15n));

function view(r: LookupResult): string[][] {
  return Array.from({ length: r.keyCount }, (_, i) => entriesAt(r, i).map((e) => `${e.pod}/${e.tier}${e.speculative ? '*' : ''}`).sort());
}

let nats: PrivateServer;
let stream = 0;
const open: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  await nats.dispose();
});
afterEach(async () => {
  for (const c of open.splice(0).reverse()) await c.close();
});

/** Each test gets its own stream, bucket and subjects, so tests never see each other's state. */
function settings(extra: ReplicationSettingsInput = {}): ReplicationSettingsInput {
  const id = `t${stream}`;
  return { natsUrl: nats.url, stream: `KVIX_${id}`, snapshotBucket: `snap-${id}`, subjectPrefix: `kvix.${id}`, ...extra };
}

async function replica(extra: ReplicationSettingsInput): Promise<Replication> {
  const r = await Replication.start(ReplicationSettingsSchema.parse(extra), { registry: new Registry(), logger });
  open.push(r);
  return r;
}

function memory(): InMemoryIndex {
  const index = new InMemoryIndex({ sweepIntervalMs: 0 });
  open.push(index);
  return index;
}

/** A publishing replica over its own in-memory index (what kv-events runs). */
async function publisher(extra: ReplicationSettingsInput): Promise<{ pub: Replication; source: InMemoryIndex; index: KvBlockIndex }> {
  const pub = await replica({ ...extra, index: 'publish' });
  const source = memory();
  const index = pub.publishTo(source);
  await pub.startPublishing();
  return { pub, source, index };
}

/** A following replica, caught up (what an EPP replica runs). */
async function follower(extra: ReplicationSettingsInput): Promise<{ replication: Replication; index: InMemoryIndex }> {
  const replication = await replica({ ...extra, index: 'follow' });
  const index = memory();
  await replication.follow(index);
  return { replication, index };
}

describe('index stream', () => {
  it('encodes operations losslessly and rejects garbage with a typed error', () => {
    const ops = decodeOps(
      encodeOps([
        { kind: 'add', engineKeys: BigUint64Array.of(1n, 2n ** 64n - 1n), requestKeys: keys(0, 3), entries: [gpu('a:1'), { pod: 'a:1', tier: 'cpu', speculative: false, group: 2 }] },
        { kind: 'evict', keys: [2n ** 63n, 5n], keyKind: 'engine', entries: [gpu('a:1')] },
        { kind: 'clear', pod: 'a:1' },
      ]),
    );
    expect(ops[0]).toEqual({ kind: 'add', engineKeys: BigUint64Array.of(1n, 2n ** 64n - 1n), requestKeys: keys(0, 3), entries: [gpu('a:1'), { pod: 'a:1', tier: 'cpu', speculative: false, group: 2 }] });
    expect(ops[1]).toEqual({ kind: 'evict', keys: [2n ** 63n, 5n], keyKind: 'engine', entries: [gpu('a:1')] });
    expect(ops[2]).toEqual({ kind: 'clear', pod: 'a:1' });
    expect(() => decodeOps(new Uint8Array([1, 2, 3]))).toThrow(ReplicationError);
  });

  it('a follower converges to what the publisher applied, evictions and clears included', async () => {
    stream++;
    const s = settings();
    const { source, index } = await publisher(s);
    await index.add(BigUint64Array.of(101n, 102n, 103n), keys(0, 3), [gpu('10.0.0.1:8000')]);
    await index.add(null, keys(0, 2), [gpu('10.0.0.2:8000'), { pod: '10.0.0.2:8000', tier: 'cpu', speculative: false }]);
    await index.add(null, keys(10, 4), [gpu('10.0.0.3:8000')]);
    await index.evict(103n, 'engine', [gpu('10.0.0.1:8000')]);
    await index.clear('10.0.0.3:8000');

    const { replication: following, index: replicaIndex } = await follower(s);
    const probe = new BigUint64Array([...keys(0, 3), ...keys(10, 4)]);
    await waitFor(async () => JSON.stringify(view(await replicaIndex.lookup(probe, { earlyStop: false }))) === JSON.stringify(view(await source.lookup(probe, { earlyStop: false }))), 10_000, 'convergence');
    expect(view(await replicaIndex.lookup(keys(0, 3), { earlyStop: false }))).toEqual([
      ['10.0.0.1:8000/gpu', '10.0.0.2:8000/cpu', '10.0.0.2:8000/gpu'],
      ['10.0.0.1:8000/gpu', '10.0.0.2:8000/cpu', '10.0.0.2:8000/gpu'],
      [],
    ]);
    // Live operations keep flowing after the bootstrap, engine-key evictions resolving on the replica.
    await index.evict(101n, 'engine', [gpu('10.0.0.1:8000')]);
    await waitFor(async () => view(await replicaIndex.lookup(keys(0, 1), { earlyStop: false }))[0]!.length === 2, 10_000, 'a live eviction');
    expect(following.status().follower?.ready).toBe(true);
  });

  it('a new replica bootstraps from the latest snapshot plus the operations after it', async () => {
    stream++;
    const s = settings();
    const { pub, index } = await publisher(s);
    await index.add(null, keys(0, 50), [gpu('a:8000')]);
    await waitFor(async () => (await pub.writeSnapshot()) || undefined, 10_000, 'a snapshot');
    await index.add(null, keys(100, 5), [gpu('b:8000')]);
    await index.evict(keys(0, 1)[0]!, 'request', [gpu('a:8000')]);

    const { replication: following, index: replicaIndex } = await follower(s);
    const status = following.status().follower!;
    expect(status.snapshotSeq).toBeGreaterThan(0);
    await waitFor(async () => (await replicaIndex.stats()).entries === 54, 10_000, '54 entries');
    expect(view(await replicaIndex.lookup(keys(0, 2), { earlyStop: false }))).toEqual([[], ['a:8000/gpu']]);
  });

  it('skips a malformed stream message, counts it, and keeps following', async () => {
    stream++;
    const s = settings();
    const { replication: following, index: replicaIndex } = await follower(s);
    const nc = await connect({ servers: nats.url });
    const js = nc.jetstream();
    await js.publish(`${s.subjectPrefix}.index.x`, new Uint8Array([0xc1, 0x00]), { headers: headers() });
    await js.publish(`${s.subjectPrefix}.index.x`, encodeOps([{ kind: 'add', engineKeys: null, requestKeys: keys(0, 1), entries: [gpu('x:1')] }]));
    await nc.close();
    await waitFor(async () => (await replicaIndex.stats()).entries === 1, 10_000, 'the good message');
    expect(following.status().follower?.malformed).toBe(1);
  });

  it('keeps every operation in order across a NATS restart', async () => {
    stream++;
    const s = settings({ publishTimeoutMs: 500 });
    const { source, index } = await publisher(s);
    const { index: replicaIndex } = await follower(s);
    const pod = '10.0.0.9:8000';
    for (let i = 0; i < 50; i++) await index.add(null, keys(i * 2, 2), [gpu(pod)]);
    await nats.restart();
    // Adds and removals made while NATS was away, in an order that only converges if kept.
    for (let i = 0; i < 50; i++) {
      await index.add(null, keys(1000 + i, 1), [gpu(pod)]);
      if (i % 2 === 0) await index.evict(keys(1000 + i, 1)[0]!, 'request', [gpu(pod)]);
    }
    await waitFor(async () => (await replicaIndex.stats()).entries === 125, 30_000, 'convergence after the restart');
    expect((await source.stats()).entries).toBe(125);
  });
});

describe('a publisher cut off from NATS for long', () => {
  it('drops the backlog past its bound and republishes the pod whole, so followers still converge', async () => {
    stream++;
    const s = settings({ publishTimeoutMs: 300, maxPendingOpsPerPod: 100 });
    const { pub, index } = await publisher(s);
    const { index: replicaIndex } = await follower(s);
    const pod = '10.0.0.5:8000';
    await index.add(null, keys(0, 10), [gpu(pod)]);
    await waitFor(async () => (await replicaIndex.stats()).entries === 10, 10_000, 'the first entries');
    await nats.stop();
    for (let i = 0; i < 150; i++) await index.add(null, keys(100 + i, 1), [gpu(pod)]);
    await index.evict(keys(0, 1)[0]!, 'request', [gpu(pod)]);
    await nats.start();
    await waitFor(async () => (await replicaIndex.stats()).entries === 159, 30_000, 'convergence after the resync');
    expect(JSON.stringify(view(await replicaIndex.lookup(keys(0, 2), { earlyStop: false })))).toBe(JSON.stringify([[], [`${pod}/gpu`]]));
    // Counted once the resync's publish is acknowledged, which may come after a follower applied it.
    await waitFor(async () => ((await pub.metrics.resyncs.get()).values[0]?.value ?? 0) >= 1, 10_000, 'the resync counted');
  });
});

describe('between router replicas', () => {
  it('a routing decision on one replica is seen by the others within milliseconds', async () => {
    stream++;
    const s = settings();
    const a = await replica(s);
    const b = await replica(s);
    const aIndex = memory();
    const bIndex = memory();
    const aScorerIndex = a.shareSpeculation(aIndex, aIndex);
    b.shareSpeculation(bIndex, bIndex);
    await new Promise((r) => setTimeout(r, 100)); // subscriptions registered on the server
    await aScorerIndex.add(null, keys(0, 4), [{ pod: 'p:1', tier: 'gpu', speculative: true }], { ttlMs: 5000 });
    await waitFor(async () => view(await bIndex.lookup(keys(0, 4))).length === 4, 5000, 'the peer decision');
    expect(view(await bIndex.lookup(keys(0, 4)))[3]).toEqual(['p:1/gpu*']);
    // It is the peer's real speculation: it expires like one.
    expect((await bIndex.stats()).speculative.active).toBe(4);
    // A replica shutting down still records its own decisions; they just are not shared.
    await a.close();
    await aScorerIndex.add(null, keys(10, 2), [{ pod: 'p:1', tier: 'gpu', speculative: true }]);
    expect(view(await aIndex.lookup(keys(10, 2)))).toEqual([['p:1/gpu*'], ['p:1/gpu*']]);
  });

  it('in-flight counts and tokens add up across replicas and vanish when a replica leaves', async () => {
    stream++;
    const s = settings({ loadFlushMs: 1 });
    const counts = (): InFlightSource & { own: Map<string, number>; peer: (id: string) => number; bump(id: string): void } => {
      const listeners: ((id: string, n: number) => void)[] = [];
      const src = {
        own: new Map<string, number>(),
        peer: (_id: string) => 0,
        ownInFlight: () => new Map(src.own),
        onInFlightChange: (l: (id: string, n: number) => void) => (listeners.push(l), () => undefined),
        setPeerInFlight: (fn: (id: string) => number) => void (src.peer = fn),
        bump(id: string) {
          src.own.set(id, (src.own.get(id) ?? 0) + 1);
          for (const l of listeners) l(id, src.own.get(id)!);
        },
      };
      return src;
    };
    const tokens = (): InFlightTokenSource & { mine: Map<string, { prefill: number; decode: number }>; peer: (id: string) => { prefill: number; decode: number }; fire(): void } => {
      const listeners: (() => void)[] = [];
      const src = {
        mine: new Map<string, { prefill: number; decode: number }>(),
        own: () => new Map(src.mine),
        peer: (_id: string) => ({ prefill: 0, decode: 0 }),
        onChange: (l: () => void) => (listeners.push(l), () => undefined),
        setPeerTokens: (fn: (id: string) => { prefill: number; decode: number }) => void (src.peer = fn),
        fire: () => listeners.forEach((l) => l()),
      };
      return src;
    };
    const a = await replica(s);
    const b = await replica(s);
    const aLoad = counts();
    const bLoad = counts();
    const aTokens = tokens();
    const bTokens = tokens();
    a.shareLoad(aLoad, aTokens);
    b.shareLoad(bLoad, bTokens);
    aLoad.bump('e:1');
    aLoad.bump('e:1');
    await waitFor(() => bLoad.peer('e:1') === 2, 5000, 'the peer count');
    expect(bLoad.peer('e:2')).toBe(0);
    // With predicted-latency routing, the tokens in flight travel too.
    aTokens.mine.set('e:1', { prefill: 3000, decode: 500 });
    aTokens.fire();
    await waitFor(() => bTokens.peer('e:1').prefill === 3000, 5000, 'the peer tokens');
    expect(bTokens.peer('e:1')).toEqual({ prefill: 3000, decode: 500 });
    await a.close();
    await waitFor(() => bLoad.peer('e:1') === 0, 5000, 'the count of a replica that left');
  });
});

describe('settings', () => {
  it('decides who dials the pods: not a follower, not a replica of a shared Redis index; a follower cannot sit on Redis', () => {
    const nats = ReplicationSettingsSchema.parse({ natsUrl: 'nats://x:4222', index: 'follow' });
    expect(indexRole(nats, 'memory', true)).toEqual({ mode: 'follow', ingests: false });
    expect(indexRole(ReplicationSettingsSchema.parse({ index: 'off' }), 'redis', false)).toEqual({ mode: 'off', ingests: false });
    expect(indexRole(ReplicationSettingsSchema.parse({ natsUrl: 'nats://x:4222', index: 'publish' }), 'memory', true)).toEqual({ mode: 'publish', ingests: true });
    expect(() => indexRole(nats, 'redis', true)).toThrow(/--no-kv-events/);
  });

  it('refuses index replication without a NATS URL, with a message naming the flag', () => {
    const r = ReplicationSettingsSchema.safeParse({ index: 'follow' });
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error?.issues)).toContain('--nats-url');
  });
});
