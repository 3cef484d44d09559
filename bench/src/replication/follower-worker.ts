import { InMemoryIndex } from '@kvix/kv-index';
import { Replication, ReplicationSettingsSchema, type ReplicationSettingsInput } from '@kvix/replication';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { parentPort, workerData } from 'node:worker_threads';

/** A replica following the index stream on its own event loop (as it would in its own pod). */
export interface FollowerReport {
  messages: number;
  ops: number;
  appliedSeq: number;
  lagMs: number[];
  entries: number;
}

const settings = workerData as ReplicationSettingsInput;
const lagMs: number[] = [];
let messages = 0;
let ops = 0;
const index = new InMemoryIndex({ sweepIntervalMs: 0, maxEntries: 50_000_000 });
const replication = await Replication.start(ReplicationSettingsSchema.parse(settings), { registry: new Registry(), logger: pino({ level: 'warn' }, pino.destination(2)) });
const follower = await replication.follow(index, {
  onApplied: (lag, n) => {
    lagMs.push(lag);
    messages++;
    ops += n;
  },
});
parentPort!.on('message', (msg: { type: 'report' | 'stop' }) => {
  void (async () => {
    if (msg.type === 'stop') {
      await replication.close();
      await index.close();
      parentPort!.postMessage({ type: 'stopped' });
      return;
    }
    const report: FollowerReport = { messages, ops, appliedSeq: follower.status().appliedSeq, lagMs: lagMs.splice(0), entries: (await index.stats()).entries };
    messages = 0;
    ops = 0;
    parentPort!.postMessage({ type: 'report', report });
  })();
});
parentPort!.postMessage({ type: 'ready' });
