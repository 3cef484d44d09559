import { parentPort, workerData } from 'node:worker_threads';
import { credentials, type ServiceError } from '@grpc/grpc-js';
import { loadKvixIndexer, type ScoreRequest, type ScoreResponse__Output } from '@kvix/proto';

/** gRPC load generator for the scoring benchmark, on its own thread so the server's event loop is alone on the main one. */
export interface ClientWorkerData {
  target: string;
  /** Requests in the order they are sent (the list is cycled). */
  requests: ScoreRequest[];
}

export type ToClient =
  | { type: 'open-loop'; ratePerSec: number; seconds: number }
  | { type: 'closed-loop'; concurrency: number; seconds: number }
  | { type: 'stop' };
export type FromClient = { type: 'ready' } | { type: 'done'; latenciesMs: number[]; errors: number; firstError: string | null; seconds: number; matchedBlocks: number };

const data = workerData as ClientWorkerData;
const Client = loadKvixIndexer().kvix.indexer.v1.KvixIndexer;
const client = new Client(data.target, credentials.createInsecure());
let cursor = 0;

function once(): Promise<{ ms: number; error: string | null; matched: number }> {
  const request = data.requests[cursor++ % data.requests.length]!;
  const start = performance.now();
  return new Promise((resolve) =>
    client.Score(request, (err: ServiceError | null, res?: ScoreResponse__Output) =>
      resolve({ ms: performance.now() - start, error: err ? err.message : null, matched: res?.scores[0]?.matchedBlocks ?? 0 }),
    ),
  );
}

async function run(msg: Exclude<ToClient, { type: 'stop' }>): Promise<FromClient> {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | null = null;
  let matched = 0;
  const record = (r: { ms: number; error: string | null; matched: number }): void => {
    if (r.error !== null) {
      errors++;
      firstError ??= r.error;
    } else latencies.push(r.ms);
    matched += r.matched;
  };
  const t0 = performance.now();
  const end = t0 + msg.seconds * 1000;
  if (msg.type === 'open-loop') {
    // A fixed arrival schedule, whatever the answers take: queueing shows up as latency.
    const inFlight: Promise<void>[] = [];
    const interval = 1000 / msg.ratePerSec;
    for (let next = t0; next < end; next += interval) {
      const wait = next - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      inFlight.push(once().then(record));
    }
    await Promise.all(inFlight);
  } else {
    await Promise.all(
      Array.from({ length: msg.concurrency }, async () => {
        while (performance.now() < end) record(await once());
      }),
    );
  }
  return { type: 'done', latenciesMs: latencies, errors, firstError, seconds: (performance.now() - t0) / 1000, matchedBlocks: matched };
}

parentPort!.on('message', (msg: ToClient) => {
  if (msg.type === 'stop') {
    client.close();
    parentPort!.close();
    return;
  }
  void run(msg).then((r) => parentPort!.postMessage(r));
});
// Connect before the first measured request.
client.waitForReady(Date.now() + 10_000, (err) => parentPort!.postMessage(err ? { type: 'done', latenciesMs: [], errors: 1, firstError: err.message, seconds: 0, matchedBlocks: 0 } : { type: 'ready' }));
