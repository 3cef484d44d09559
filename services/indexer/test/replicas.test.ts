import { startNats, waitFor, type PrivateServer } from '@kvix/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Indexer } from '../src/index.js';
import { MODEL, post, startIndexer, startSim, writeEndpointsFile, type Sim } from './helpers.js';

// Two indexers behind one Service: one dials the pods and publishes the index stream, the other
// dials nothing and follows it. A client must not care which one answers.
let nats: PrivateServer;
const sims: Sim[] = [];
let publisher: Indexer;
let follower: Indexer;

beforeAll(async () => {
  nats = await startNats();
  for (let i = 0; i < 2; i++) sims.push(await startSim());
  const ingest = { endpointsFile: writeEndpointsFile(sims) };
  publisher = await startIndexer({ ingest, replication: { natsUrl: nats.url, index: 'publish', replicaId: 'publisher' } });
  follower = await startIndexer({ ingest, replication: { natsUrl: nats.url, index: 'follow', replicaId: 'follower' } });
  await waitFor(async () => (await fetch(`${follower.httpUrl}/readyz`)).status === 200, 20_000, 'the follower to be ready');
});

afterAll(async () => {
  await follower?.stop();
  await publisher?.stop();
  for (const s of sims) await s.pod.stop();
  await nats?.dispose();
});

describe('an indexer following the index stream', () => {
  it('dials no pod, yet scores a prompt exactly as the publishing indexer does', async () => {
    expect(follower.ingestor).toBeNull();
    const prompt = 'Shipping manifest for container 7: '.repeat(20);
    const completion = await fetch(`${sims[1]!.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, prompt, max_tokens: 1 }) });
    expect(completion.status).toBe(200);
    const score = async (indexer: Indexer): Promise<string> => JSON.stringify((await post(`${indexer.httpUrl}/v1/score/completions`, { model: MODEL, prompt })).json['scores']);
    const agreed = await waitFor(async () => {
      const [a, b] = await Promise.all([score(publisher), score(follower)]);
      return a === b && a.includes('"matched_blocks":') && !a.includes('"matched_blocks":0,') ? a : undefined;
    }, 15_000, 'both indexers to score the prompt alike');
    expect(agreed).toContain(sims[1]!.id);
    // Its pod list comes from discovery; the stream positions live in the publisher.
    const pods = (await (await fetch(`${follower.httpUrl}/v1/pods`)).json()) as { pods: { pod: string; discovered: boolean; last_seq: string | null; entries: number }[] };
    expect(pods.pods.map((p) => [p.pod, p.discovered, p.last_seq])).toEqual(sims.map((s) => [s.id, true, null]).sort());
    expect(pods.pods.find((p) => p.pod === sims[1]!.id)!.entries).toBeGreaterThan(0);
  });

  it('refuses to follow a stream while its index is a shared Redis, naming what to use instead', async () => {
    await expect(startIndexer({ index: { redis: { url: 'redis://127.0.0.1:1' } }, replication: { natsUrl: nats.url, index: 'follow' } })).rejects.toThrow(/--no-kv-events/);
  });
});
