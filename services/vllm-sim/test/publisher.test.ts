import { decodeEventBatch, encodeReplayRequest, parseReplayReply, type KvEvent } from '@kvix/kv-events';
import { freePorts } from '@kvix/test-support';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Dealer } from 'zeromq';
import { EventPublisher, parseKvEventsConfig } from '../src/index.js';

const publishers: EventPublisher[] = [];
afterEach(async () => {
  for (const p of publishers.splice(0)) await p.close();
});

async function startPublisher(): Promise<{ publisher: EventPublisher; replay: string }> {
  const [events, replay] = (await freePorts(2)) as [number, number];
  const publisher = new EventPublisher({
    config: parseKvEventsConfig({ enable_kv_cache_events: true, endpoint: `tcp://*:${events}`, replay_endpoint: `tcp://*:${replay}` }),
    rank: 0,
    topic: 'kv@127.0.0.1:8000@m',
    layout: 'map',
    intHashes: true,
    logger: pino({ level: 'silent' }),
  });
  publishers.push(publisher);
  await publisher.start();
  return { publisher, replay: `tcp://127.0.0.1:${replay}` };
}

/** Every batch the replay socket holds from `from`, as (seq, first removed hash). */
async function replayed(endpoint: string, from = 0n): Promise<{ seq: bigint; hash: bigint }[]> {
  const dealer = new Dealer({ linger: 0, receiveTimeout: 2000 });
  dealer.connect(endpoint);
  try {
    await dealer.send(encodeReplayRequest(from));
    const out: { seq: bigint; hash: bigint }[] = [];
    for (;;) {
      const reply = parseReplayReply(await dealer.receive());
      if (reply.end) return out;
      const ev = decodeEventBatch(reply.payload).events[0]!;
      out.push({ seq: reply.seq, hash: ev.type === 'BlockRemoved' ? ev.blockHashes[0]! : -1n });
    }
  } finally {
    dealer.close();
  }
}

const removal = (hash: bigint): KvEvent[] => [{ type: 'BlockRemoved', blockHashes: BigUint64Array.of(hash), medium: 'GPU', groupIdx: 0 }];

describe('the simulated engine\'s KV-event publisher', () => {
  it('numbers, keeps and replays the batches of steps that run while it restarts', async () => {
    const { publisher, replay } = await startPublisher();
    publisher.publish(removal(1n));
    // The engine keeps stepping while the sockets are rebound: its batches belong to the new sequence.
    const restarting = publisher.restart();
    publisher.publish(removal(2n));
    publisher.publish(removal(3n));
    await restarting;
    publisher.publish(removal(4n));
    expect(publisher.stats.nextSeq).toBe(3n);
    expect(await replayed(replay)).toEqual([
      { seq: 0n, hash: 2n },
      { seq: 1n, hash: 3n },
      { seq: 2n, hash: 4n },
    ]);
  });

  it('takes two restarts at once one after the other, the sequence starting over after each', async () => {
    const { publisher, replay } = await startPublisher();
    publisher.publish(removal(1n));
    const first = publisher.restart();
    const second = publisher.restart();
    await Promise.all([first, second]);
    publisher.publish(removal(2n));
    expect(await replayed(replay)).toEqual([{ seq: 0n, hash: 2n }]);
  });
});
