import type { EnvoyProcess } from '@kvix/envoy';
import { ceiling, freePorts, nodeCli, repoRoot, startNats, startRedis, waitFor, type ManagedProcess, type PrivateServer } from '@kvix/test-support';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chat, endpointsFile, MODEL, send, startRealEnvoy, startSim, type Sim } from '../support/stack.js';

// Three EPP replicas (real processes, so a kill is a real kill) follow one index stream that a
// kv-events process publishes from the pods' KV events; a real Envoy running deploy/envoy/envoy.yaml
// is the one gateway in front, with the replicas as its ext_proc cluster and the pods as its pool.
const eppBin = join(repoRoot(), 'services/epp/bin/kvix-epp.js');
const kvEventsBin = join(repoRoot(), 'services/kv-events/bin/kvix-kv-events.js');
const epps = nodeCli(eppBin);
const publishers = nodeCli(kvEventsBin);

interface Replica {
  id: string;
  proc: ManagedProcess;
  extProc: number;
  metricsPort: number;
  metrics: string;
}

interface Score {
  pod: string;
  score: number;
  matchedBlocks: number;
}

let nats: PrivateServer;
const sims: Sim[] = [];
let file: string;
let publisher: ManagedProcess;
let replicas: Replica[] = [];
let envoy: EnvoyProcess;

/**
 * `index`: follow the publisher's stream (default), or share a Redis index another process writes.
 * `ports`: a restarted replica comes back where it was (where Envoy's cluster expects it).
 */
async function startReplica(id: string, index: string[] = ['--replicate-index', 'follow'], ports?: { extProc: number; metricsPort: number }): Promise<Replica> {
  const [extProc, metricsPort] = ports ? [ports.extProc, ports.metricsPort] : await freePorts(2);
  const proc = epps.run(
    ['--endpoints-file', file, '--nats-url', nats.url, ...index, '--replica-id', id, '--no-gateway', '--ext-proc-host', '127.0.0.1', '--ext-proc-port', String(extProc), '--metrics-host', '127.0.0.1', '--metrics-port', String(metricsPort), '--tokenizer-workers', '1', '--debug-routes', '--log-level', 'warn'],
  );
  const metrics = `http://127.0.0.1:${metricsPort}`;
  await waitFor(async () => (await fetch(`${metrics}/readyz`)).status === 200, 30_000, `replica ${id} ready (${proc.output().slice(-500)})`);
  return { id, proc, extProc: extProc!, metricsPort: metricsPort!, metrics };
}

/** Requests this replica has routed (llm-d's request counter, all models). */
async function routedBy(replica: Replica): Promise<number> {
  const text = await (await fetch(`${replica.metrics}/metrics`)).text();
  return [...text.matchAll(/^llm_d_epp_request_total\{[^}]*\} (\d+)/gm)].reduce((a, m) => a + Number(m[1]), 0);
}

async function scores(replica: Replica, question: string): Promise<Score[]> {
  const res = await fetch(`${replica.metrics}/debug/score`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, messages: (chat(question)['messages'] as unknown[]) }) });
  if (res.status !== 200) throw new Error(`score from ${replica.id}: ${res.status} ${await res.text()}`);
  const body = (await res.json()) as { scores: Score[] };
  return body.scores.map((s) => ({ pod: s.pod, score: s.score, matchedBlocks: s.matchedBlocks })).sort((a, b) => a.pod.localeCompare(b.pod));
}

/** Waits until every live replica scores the question the same, with some pod holding part of it. */
async function converged(question: string, live: Replica[]): Promise<Score[]> {
  return waitFor(
    async () => {
      const all = await Promise.all(live.map((r) => scores(r, question)));
      const first = JSON.stringify(all[0]);
      return all.every((s) => JSON.stringify(s) === first) && all[0]!.some((s) => s.matchedBlocks > 0) ? all[0]! : undefined;
    },
    20_000,
    `every replica scoring "${question}" alike`,
  );
}

beforeAll(async () => {
  nats = await startNats();
  // Real time, and a slow prefill (1 k tokens/s): a pod's KV events trail a routing decision by a
  // few hundred milliseconds, the window in which only shared speculation keeps a burst together.
  for (let i = 0; i < 4; i++) sims.push(await startSim({ timeScale: 1, prefillTokensPerSec: 1000 }));
  file = endpointsFile(sims);
  const [publisherPort] = await freePorts(1);
  publisher = publishers.run(['--endpoints-file', file, '--nats-url', nats.url, '--replica-id', 'ingest', '--http-host', '127.0.0.1', '--http-port', String(publisherPort), '--log-level', 'warn']);
  await waitFor(async () => (await fetch(`http://127.0.0.1:${publisherPort}/readyz`)).status === 200, 30_000, `the publisher (${publisher.output().slice(-500)})`);
  replicas = [await startReplica('r1'), await startReplica('r2'), await startReplica('r3')];
  envoy = await startRealEnvoy(replicas.map((r) => `127.0.0.1:${r.extProc}`), sims.map((s) => s.id));
}, ceiling(120_000));

afterAll(async () => {
  await envoy?.stop();
  await epps.stopAll();
  await publishers.stopAll();
  for (const s of sims) await s.pod.stop();
  await nats?.dispose();
}, ceiling(60_000));

describe('three active-active EPP replicas behind one gateway', () => {
  it('score every prompt identically once the index stream has been applied', async () => {
    for (let i = 0; i < 6; i++) expect((await send(envoy.url(), '/v1/chat/completions', chat(`Where is parcel ${i}?`))).status).toBe(200);
    const agreed = await converged('Where is parcel 9?', replicas);
    expect(agreed.filter((s) => s.matchedBlocks > 0).length).toBeGreaterThan(0);
  });

  it('send a burst of same-prefix requests arriving at different replicas to one pod', async () => {
    // A prefix no pod holds yet: only speculation shared between replicas can keep it together,
    // since the pod's KV events arrive after the whole burst was routed (~300 prompt tokens at
    // 1 k tokens/s of prefill). The first decision must reach both peers before the rest arrive:
    // that normally takes a millisecond or two, but more than a burst's spacing on a loaded CI
    // machine, so the test waits for it (the rest still arrive within the events' window).
    const system = `You are the dispatcher for fleet ${Date.now()}. Plan each truck's day in numbered steps, citing the depot rules. `.repeat(12);
    const body = (i: number): Record<string, unknown> => ({ model: MODEL, max_tokens: 4, messages: [{ role: 'system', content: system }, { role: 'user', content: `Truck ${i}?` }] });
    const received = async (): Promise<number> =>
      (await Promise.all(replicas.map(async (r) => Number(/^kvix_replication_speculations_received_total (\d+)/m.exec(await (await fetch(`${r.metrics}/metrics`)).text())?.[1] ?? 0)))).reduce((a, b) => a + b, 0);
    const before = await received();
    const first = send(envoy.url(), '/v1/chat/completions', body(0));
    await waitFor(async () => (await received()) >= before + 2, 10_000, 'the first decision shared with both peers');
    const rest = Array.from({ length: 5 }, (_, i) => new Promise<Awaited<ReturnType<typeof send>>>((resolve, reject) => setTimeout(() => send(envoy.url(), '/v1/chat/completions', body(i + 1)).then(resolve, reject), i * 20)));
    const answers = [await first, ...(await Promise.all(rest))];
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(new Set(answers.map((a) => a.endpoint)).size).toBe(1);
    const peerDecisions = await Promise.all(replicas.map(async (r) => Number(/^kvix_replication_speculations_received_total (\d+)/m.exec(await (await fetch(`${r.metrics}/metrics`)).text())?.[1] ?? 0)));
    expect(peerDecisions.every((n) => n > 0)).toBe(true);
    // The pod's own events (vLLM reports KV-cache group 0) confirm the group-less speculation on
    // every replica: speculation accuracy is measured, not every decision counted as expired.
    await waitFor(async () => {
      const confirmed = await Promise.all(replicas.map(async (r) => Number(/^kvix_index_speculative_confirmed_total (\d+)/m.exec(await (await fetch(`${r.metrics}/metrics`)).text())?.[1] ?? 0)));
      return confirmed.every((n) => n > 0);
    }, 10_000, 'speculations confirmed by the pod\'s events on every replica');
  });

  it('lose a replica mid-traffic without failing a request; restarted, it converges and routes again at once', async () => {
    const statuses: number[] = [];
    let sent = 0;
    const worker = async (): Promise<void> => {
      while (sent < 60) {
        const n = sent++;
        // Half of them streamed: a replica that dies mid-response must not cut the stream either.
        const answer = await send(envoy.url(), '/v1/chat/completions', chat(`Route ${n % 7} please`, { stream: n % 2 === 0 }));
        statuses.push(answer.status === 200 && (n % 2 === 1 || answer.text.trimEnd().endsWith('data: [DONE]')) ? 200 : answer.status || -1);
      }
    };
    const traffic = Promise.all([worker(), worker(), worker(), worker()]);
    await waitFor(() => sent >= 15, 30_000, 'traffic under way');
    const killed = replicas[1]!;
    await killed.proc.stop('SIGKILL');
    await traffic;
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(statuses.length).toBe(60);

    // Back where it was: Envoy's health check finds it and its ejection ends with it.
    const restarted = await startReplica('r2', undefined, { extProc: killed.extProc, metricsPort: killed.metricsPort });
    replicas = [replicas[0]!, restarted, replicas[2]!];
    await converged('Route 3 please', replicas);
    await waitFor(async () => (await envoy.hosts('epp')).every((h) => h.healthy), 30_000, 'Envoy to find every replica healthy');
    // Once Envoy's health check has passed (its worker threads learn it a moment later), round
    // robin sends it streams again: no ejection keeps it out.
    const afterRestart: number[] = [];
    await waitFor(async () => {
      afterRestart.push((await send(envoy.url(), '/v1/chat/completions', chat(`After the restart ${afterRestart.length}`))).status);
      return (await routedBy(restarted)) > 0;
    }, 30_000, 'the restarted replica to route a request');
    expect(afterRestart.filter((s) => s !== 200)).toEqual([]);
  });

  it('ride out a NATS restart: traffic keeps flowing and replicas catch up afterwards', async () => {
    const statuses: number[] = [];
    const during = (async () => {
      for (let i = 0; i < 20; i++) statuses.push((await send(envoy.url(), '/v1/chat/completions', chat(`Customs form ${i}?`))).status);
    })();
    await nats.restart();
    await during;
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    // Events the publisher applied while NATS was away reach every replica once it is back.
    for (let i = 0; i < 3; i++) expect((await send(envoy.url(), '/v1/chat/completions', chat(`Carrier ${i} after the restart?`))).status).toBe(200);
    await converged('Carrier 7 after the restart?', replicas);
  });
});

describe('three replicas sharing one Redis index', () => {
  let redis: PrivateServer;
  let shared: Replica[] = [];
  let front: EnvoyProcess;
  let redisPublisher: ManagedProcess;

  beforeAll(async () => {
    // The first suite's replicas and publisher step aside; the pods and NATS stay.
    await envoy.stop();
    await epps.stopAll();
    await publishers.stopAll();
    redis = await startRedis();
    const [port] = await freePorts(1);
    redisPublisher = publishers.run(['--endpoints-file', file, '--redis-url', redis.url, '--http-host', '127.0.0.1', '--http-port', String(port), '--log-level', 'warn']);
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200, 30_000, `the Redis publisher (${redisPublisher.output().slice(-500)})`);
    const onRedis = ['--redis-url', redis.url, '--no-kv-events'];
    shared = [await startReplica('s1', onRedis), await startReplica('s2', onRedis), await startReplica('s3', onRedis)];
    front = await startRealEnvoy(shared.map((r) => `127.0.0.1:${r.extProc}`), sims.map((s) => s.id));
  }, ceiling(120_000));

  afterAll(async () => {
    await front?.stop();
    await redis?.dispose();
  }, ceiling(60_000));

  it('score alike, and ride out a Redis restart on load-only routing until the index is rebuilt', async () => {
    for (let i = 0; i < 4; i++) expect((await send(front.url(), '/v1/chat/completions', chat(`Invoice ${i}?`))).status).toBe(200);
    await converged('Invoice 9?', shared);

    const statuses: number[] = [];
    const during = (async () => {
      for (let i = 0; i < 20; i++) statuses.push((await send(front.url(), '/v1/chat/completions', chat(`Refund ${i}?`))).status);
    })();
    await redis.restart(); // no persistence: it comes back empty
    await during;
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    // The publisher notices the empty Redis and rebuilds every pod from its replay buffer.
    for (let i = 0; i < 3; i++) expect((await send(front.url(), '/v1/chat/completions', chat(`Refund ${i} after the restart?`))).status).toBe(200);
    await converged('Refund 7 after the restart?', shared);
  });
});
