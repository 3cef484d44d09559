/**
 * Issue 16: POST /debug/score on the port Prometheus scrapes answered "how much of this prompt does
 * each pod hold" for any text, the indexer took routing decisions and dumped pods for anyone, and
 * /debug/score took 8 s on a 900 KB prompt. Those routes are off unless enabled; the metrics port
 * can require a token; a deadline bounds every scoring call.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { credentials, status, type ServiceError } from '@grpc/grpc-js';
import { Indexer, IndexerConfigSchema } from '@kvix/indexer';
import { KvEventsService, KvEventsServiceConfigSchema } from '@kvix/kv-events-service';
import { loadKvixIndexer } from '@kvix/proto';
import { ceiling, makeTestPki, waitFor, type TestPki } from '@kvix/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupsAfterEach } from '../support/cleanups.js';
import { endpointsFile, MODEL, silent, startSim, startStack, type Sim, type Stack } from '../support/stack.js';
import { hostileWord } from './support.js';

const cleanups = cleanupsAfterEach();
let pki: TestPki;
beforeAll(() => {
  pki = makeTestPki();
});
afterAll(() => pki.dispose());

async function sim(): Promise<Sim> {
  const s = await startSim();
  cleanups.push(() => s.pod.stop());
  return s;
}

async function epp(extra: Record<string, unknown> = {}): Promise<Stack> {
  const s = await startStack('gateway', [await sim()], extra);
  cleanups.push(() => s.stop());
  return s;
}

const post = (url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

describe('routes that reveal or change state', () => {
  it("the EPP's POST /debug/score is off by default", async () => {
    const { metrics } = await epp();
    const res = await post(`${metrics}/debug/score`, { model: MODEL, prompt: 'a guess at a secret prompt' });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: 'DEBUG_ROUTES_OFF' } });
  });

  it("the indexer's routing decisions and dumps are off by default; the EPP's gRPC decisions still work", async () => {
    const s = await sim();
    const indexer = await Indexer.start(IndexerConfigSchema.parse({ logLevel: 'silent', http: { host: '127.0.0.1', port: 0 }, grpc: { host: '127.0.0.1', port: 0 }, ingest: { endpointsFile: endpointsFile([s]) }, tokenization: { workers: 1 } }), silent);
    cleanups.push(() => indexer.stop());
    const decision = await post(`${indexer.httpUrl}/v1/routing-decisions`, { model: MODEL, token_ids: [1, 2, 3], pod: '10.0.0.1:8000' });
    expect(decision.status).toBe(404);
    expect((await fetch(`${indexer.httpUrl}/v1/pods/${s.id}/entries`)).status).toBe(404);
    const client = new (loadKvixIndexer().kvix.indexer.v1.KvixIndexer)(`127.0.0.1:${indexer.grpcPort}`, credentials.createInsecure());
    cleanups.push(async () => client.close());
    const dump = await new Promise<ServiceError | null>((resolve) => client.DumpPod({ pod: s.id }, (err) => resolve(err)));
    expect(dump?.code).toBe(status.PERMISSION_DENIED);
    const recorded = await new Promise<ServiceError | null>((resolve) => client.RecordRoutingDecision({ prompt: { model: MODEL, tokenIds: { ids: Array.from({ length: 32 }, (_, i) => i + 1) } }, pod: s.id }, (err) => resolve(err)));
    expect(recorded).toBeNull();
  });

  it("the kv-events service's lookup and entry dump are off by default", async () => {
    const s = await sim();
    const service = await KvEventsService.start(KvEventsServiceConfigSchema.parse({ logLevel: 'silent', http: { host: '127.0.0.1', port: 0 }, ingest: { endpointsFile: endpointsFile([s]) } }), silent);
    cleanups.push(() => service.stop());
    expect((await post(`${service.url}/debug/lookup`, { tokens: [1, 2, 3], model: MODEL })).status).toBe(404);
    expect((await fetch(`${service.url}/debug/pods/${s.id}/entries`)).status).toBe(404);
    expect((await fetch(`${service.url}/debug/pods`)).status).toBe(200);
  });

  it('a 900 KB prompt on /debug/score (when enabled) ends at the tokenization deadline with 504', async () => {
    // A deadline scaled for the machine's load, far below the seconds the prompt takes to tokenize.
    const { metrics } = await epp({ debugRoutes: true, tokenization: { workers: 1, timeoutMs: ceiling(300) } });
    const res = await post(`${metrics}/debug/score`, { model: MODEL, prompt: hostileWord(900_000) });
    expect(res.status).toBe(504);
    expect(await res.json()).toMatchObject({ error: { code: 'DEADLINE_EXCEEDED' } });
    // The thread busy with it is replaced; scoring goes on once the replacement has loaded.
    await waitFor(async () => (await post(`${metrics}/debug/score`, { model: MODEL, prompt: 'a short one' })).status === 200, 30_000, 'a short prompt scored after the replacement');
  });
});

describe('the metrics port', () => {
  it('requires the bearer token on everything but the probes when one is configured', async () => {
    const tokenFile = join(pki.dir, 'metrics-token');
    writeFileSync(tokenFile, 'hunter2-but-longer\n');
    const { metrics } = await epp({ metrics: { host: '127.0.0.1', port: 0, authTokenFile: tokenFile } });
    expect((await fetch(`${metrics}/metrics`)).status).toBe(401);
    expect((await fetch(`${metrics}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    expect((await fetch(`${metrics}/debug/endpoints`)).status).toBe(401);
    const scraped = await fetch(`${metrics}/metrics`, { headers: { authorization: 'Bearer hunter2-but-longer' } });
    expect(scraped.status).toBe(200);
    expect(await scraped.text()).toContain('kvix_');
    expect((await fetch(`${metrics}/healthz`)).status).toBe(200);
    expect((await fetch(`${metrics}/readyz`)).status).toBe(200);
  });
});
