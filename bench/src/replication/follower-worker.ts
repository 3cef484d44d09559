import { ForwardingIndex, InMemoryIndex, type AddOptions, type PodEntry } from '@kvix/kv-index';
import { Replication, ReplicationSettingsSchema, type ReplicationSettingsInput } from '@kvix/replication';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { parentPort, workerData } from 'node:worker_threads';

/** A replica on its own event loop (as it would be in its own pod): following the index stream, or receiving peers' routing decisions. */
export interface FollowerReport {
  messages: number;
  ops: number;
  appliedSeq: number;
  lagMs: number[];
  entries: number;
}

const { settings, role } = workerData as { settings: ReplicationSettingsInput; role: 'follow' | 'speculation' };
const lagMs: number[] = [];
let messages = 0;
let ops = 0;
const index = new InMemoryIndex({ sweepIntervalMs: 0, maxEntries: 50_000_000 });
const replication = await Replication.start(ReplicationSettingsSchema.parse(settings), { registry: new Registry(), logger: pino({ level: 'warn' }, pino.destination(2)) });

/** A peer router's index: the first key of each shared decision carries its send time (µs), for the lag. */
class ProbeIndex extends ForwardingIndex {
  override async add(engineKeys: BigUint64Array | null, requestKeys: BigUint64Array, entries: readonly PodEntry[], options?: AddOptions): Promise<void> {
    await super.add(engineKeys, requestKeys, entries, options);
    lagMs.push(performance.timeOrigin + performance.now() - Number(requestKeys[0]!) / 1000);
    messages++;
  }
}

const follower =
  role === 'follow'
    ? await replication.follow(index, {
        onApplied: (lag, n) => {
          lagMs.push(lag);
          messages++;
          ops += n;
        },
      })
    : (replication.shareSpeculation(index, new ProbeIndex(index)), null);
parentPort!.on('message', (msg: { type: 'report' | 'stop' }) => {
  void (async () => {
    if (msg.type === 'stop') {
      await replication.close();
      await index.close();
      parentPort!.postMessage({ type: 'stopped' });
      return;
    }
    const report: FollowerReport = { messages, ops, appliedSeq: follower?.status().appliedSeq ?? 0, lagMs: lagMs.splice(0), entries: (await index.stats()).entries };
    messages = 0;
    ops = 0;
    parentPort!.postMessage({ type: 'report', report });
  })();
});
parentPort!.postMessage({ type: 'ready' });
