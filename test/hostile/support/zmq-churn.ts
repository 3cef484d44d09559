/**
 * Churns ZeroMQ sockets the way a fleet does, in one process, for KVIX_SOAK_SECONDS: simulated
 * publishers restart (two restarts at once too) while subscribers come and go, replay clients fetch
 * and abandon replays mid-reply, and a centralized (bound) subscriber is closed and rebound while
 * pods dial it. libzmq aborts the whole process (an assertion) when one socket is driven from two
 * threads, so surviving is the result; the counts printed at the end show the churn really ran.
 */
import { EventSubscriber, ZmqReplayClient } from '@kvix/kv-ingest';
import { ceiling, freePorts } from '@kvix/test-support';
import { EventPublisher, parseKvEventsConfig } from '@kvix/vllm-sim';
import type { KvEvent } from '@kvix/kv-events';
import { pino } from 'pino';
import { Dealer, Subscriber } from 'zeromq';

const seconds = Number(process.env['KVIX_SOAK_SECONDS'] ?? 30);
/** The first phase hammers the replay sockets (restarts under replay traffic), the rest mixes everything. */
const focusEnd = Date.now() + Math.max(10, seconds / 3) * 1000;
const end = Date.now() + seconds * 1000;
let phaseEnd = focusEnd;
const logger = pino({ level: 'silent' });
const rnd = (n: number): number => Math.floor(Math.random() * n);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const running = (): boolean => Date.now() < phaseEnd;

const counts = { restarts: 0, subscribers: 0, received: 0, replays: 0, replayedBatches: 0, abandonedReplays: 0, centralRebinds: 0, centralReceived: 0 };
const PODS = 3;
const DIALERS = 2;
const ports = await freePorts(2 * PODS + 1);
const centralPort = ports[2 * PODS]!;

function publisher(endpoint: string, replay: string | null, topic: string): EventPublisher {
  const config = parseKvEventsConfig({ enable_kv_cache_events: true, endpoint, replay_endpoint: replay, buffer_steps: 500 });
  return new EventPublisher({ config, rank: 0, topic, layout: 'map', intHashes: true, logger });
}

const pods = Array.from({ length: PODS }, (_, i) => publisher(`tcp://*:${ports[i]}`, `tcp://*:${ports[PODS + i]}`, `kv@pod${i}@m`));
// vLLM connects (rather than binds) when the endpoint names a host: centralized mode.
const dialers = Array.from({ length: DIALERS }, (_, i) => publisher(`tcp://127.0.0.1:${centralPort}`, null, `kv@dialer${i}@m`));
for (const p of [...pods, ...dialers]) await p.start();

function stored(): KvEvent[] {
  return [{ type: 'BlockStored', blockHashes: BigUint64Array.of(BigInt(rnd(1e9))), parentBlockHash: null, tokenIds: new Uint32Array(16), blockSize: 16, loraId: null, medium: 'GPU', loraName: null, extraKeys: null, groupIdx: null, kvCacheSpecKind: null, kvCacheSpecSlidingWindow: null }];
}

const handlers = (onMessage: () => void): ConstructorParameters<typeof EventSubscriber>[3] => ({ message: onMessage, malformed: () => undefined, connected: () => undefined, disconnected: () => undefined, reconnecting: () => undefined });
const subscriberOptions = { topicPrefix: '', receiveHighWaterMark: 1000, reconnectIntervalMs: 10, reconnectMaxIntervalMs: 100 };

async function publishing(): Promise<void> {
  while (running()) {
    for (const p of [...pods, ...dialers]) for (let k = 0; k < 5; k++) p.publish(stored());
    await sleep(1);
  }
}

async function restarting(all: EventPublisher[], meanGapMs: number): Promise<void> {
  while (running()) {
    await sleep(rnd(2 * meanGapMs));
    const p = all[rnd(all.length)]!;
    const first = p.restart();
    const second = Math.random() < 0.3 ? p.restart() : null;
    await first;
    await second;
    counts.restarts++;
  }
}

async function subscribing(): Promise<void> {
  while (running()) {
    const sub = new EventSubscriber(`tcp://127.0.0.1:${ports[rnd(PODS)]}`, 'connect', subscriberOptions, handlers(() => counts.received++));
    await sub.start();
    await sleep(rnd(100));
    sub.close();
    counts.subscribers++;
  }
}

async function replaying(): Promise<void> {
  while (running()) {
    const client = new ZmqReplayClient(`tcp://127.0.0.1:${ports[PODS + rnd(PODS)]}`, { idleTimeoutMs: ceiling(200), totalTimeoutMs: ceiling(1000) });
    const batches = await client.fetch(0n).catch(() => []);
    counts.replays++;
    counts.replayedBatches += batches.length;
    await sleep(rnd(20));
  }
}

/** Asks for a replay and goes away while it is being sent. */
async function abandoningReplays(): Promise<void> {
  while (running()) {
    const dealer = new Dealer({ linger: rnd(2) === 0 ? 0 : 50 });
    dealer.connect(`tcp://127.0.0.1:${ports[PODS + rnd(PODS)]}`);
    dealer.send([Buffer.alloc(0), Buffer.alloc(8)]).catch(() => undefined);
    await sleep(rnd(5));
    dealer.close();
    counts.abandonedReplays++;
  }
}

/** Raw subscribers that disconnect, or just close, at random points of a stream. */
async function rawSubscribers(): Promise<void> {
  while (running()) {
    const endpoint = `tcp://127.0.0.1:${ports[rnd(PODS)]}`;
    const sub = new Subscriber();
    sub.subscribe('');
    sub.connect(endpoint);
    await sleep(rnd(30));
    if (Math.random() < 0.5) sub.disconnect(endpoint);
    sub.close();
  }
}

/** The centralized collector: one bound SUB the dialing pods connect to, closed and rebound now and then. */
async function centralized(): Promise<void> {
  while (running()) {
    const sub = new EventSubscriber(`tcp://*:${centralPort}`, 'bind', subscriberOptions, handlers(() => counts.centralReceived++));
    for (;;) {
      try {
        await sub.start();
        break;
      } catch (err) {
        if ((err as { code?: string }).code !== 'EADDRINUSE') throw err;
        await sleep(10);
      }
    }
    await sleep(100 + rnd(300));
    sub.close();
    counts.centralRebinds++;
  }
}

// Replay sockets restarting under replay traffic is what aborted libzmq before (see EventPublisher's
// closeSockets: within seconds, before the fix), so the first phase does only that, as fast as it can.
await Promise.all([publishing(), restarting(pods, 5), restarting(pods, 5), abandoningReplays(), abandoningReplays(), abandoningReplays(), abandoningReplays(), replaying()]);
phaseEnd = end;
await Promise.all([publishing(), restarting(pods, 50), restarting(dialers, 200), subscribing(), replaying(), replaying(), abandoningReplays(), abandoningReplays(), abandoningReplays(), rawSubscribers(), centralized()]);
for (const p of [...pods, ...dialers]) await p.close();
console.log(`SURVIVED ${JSON.stringify(counts)}`);
