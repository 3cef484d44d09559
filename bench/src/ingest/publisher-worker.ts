import { parentPort, workerData } from 'node:worker_threads';
import { encodeSeq } from '@kvix/kv-events';
import { Publisher } from 'zeromq';
import { BENCH_MODEL, blocksPerBatch, nowSeconds, podPayloads, stampTs, type WorkloadShape } from './workload.js';

/** Publishers of the ingestion benchmark, on their own thread so the consumer has a core to itself. */
export interface PublisherWorkerData {
  eventPorts: number[];
  servingPorts: number[];
  shape: WorkloadShape;
}

export type ToPublisher = { type: 'run'; blocksPerSec: number; seconds: number } | { type: 'stop' };
export type FromPublisher = { type: 'ready' } | { type: 'done'; batches: number; blocks: number; seconds: number; lastSeq: string[] };

const data = workerData as PublisherWorkerData;
const payloads = data.eventPorts.map((_, pod) => podPayloads(pod, data.shape));
const perBatch = blocksPerBatch(data.shape);
const sockets: Publisher[] = [];
for (const port of data.eventPorts) {
  // A high water mark far above what a step sends: drops would be the publisher's, not the consumer's.
  const pub = new Publisher({ sendHighWaterMark: 1_000_000, linger: 0 });
  await pub.bind(`tcp://127.0.0.1:${port}`);
  sockets.push(pub);
}
const topics = data.servingPorts.map((p) => Buffer.from(`kv@127.0.0.1:${p}@${BENCH_MODEL}`));
const nextSeq = data.eventPorts.map(() => 0n);
const cursor = data.eventPorts.map(() => 0);

async function sendOne(pod: number): Promise<void> {
  const seq = nextSeq[pod]!;
  nextSeq[pod] = seq + 1n;
  const ring = payloads[pod]!;
  const payload = stampTs(ring[cursor[pod]!]!, nowSeconds());
  cursor[pod] = (cursor[pod]! + 1) % ring.length;
  await sockets[pod]!.send([topics[pod]!, Buffer.from(encodeSeq(seq)), payload]);
}

/** Paced sending: every millisecond, catch up to rate × elapsed, pods in turn. */
async function run(blocksPerSec: number, seconds: number): Promise<FromPublisher> {
  const batchesPerSec = blocksPerSec / perBatch;
  const start = performance.now();
  const end = start + seconds * 1000;
  let sent = 0;
  let pod = 0;
  for (;;) {
    const now = performance.now();
    if (now >= end) break;
    const due = Math.floor(((now - start) / 1000) * batchesPerSec);
    while (sent < due) {
      await sendOne(pod);
      pod = (pod + 1) % sockets.length;
      sent++;
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  return { type: 'done', batches: sent, blocks: sent * perBatch, seconds: (performance.now() - start) / 1000, lastSeq: nextSeq.map((s) => String(s - 1n)) };
}

parentPort!.on('message', (msg: ToPublisher) => {
  if (msg.type === 'stop') {
    for (const s of sockets) s.close();
    parentPort!.close();
    return;
  }
  void run(msg.blocksPerSec, msg.seconds).then((r) => parentPort!.postMessage(r));
});
parentPort!.postMessage({ type: 'ready' } satisfies FromPublisher);
