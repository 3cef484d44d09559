import { Client, credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { loadKvixIndexer, loadLlmdIndexer, type GetPodScoresResponse__Output, type ScoreResponse__Output } from '@kvix/proto';
import { waitFor } from '@kvix/test-support';
import { loadPackageDefinition } from '@grpc/grpc-js';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Indexer } from '../src/index.js';
import { caughtUp, MODEL, post, startIndexer, startSim, writeEndpointsFile, type Sim } from './helpers.js';

type Callback<T> = (err: ServiceError | null, res?: T) => void;
function call<T>(fn: (cb: Callback<T>) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res as T))));
}

const SYSTEM = 'You are the support assistant of a company that runs GPU clusters. Answer precisely, cite the runbook section, and never guess. '.repeat(6);
const promptA = `${SYSTEM}Question: why does my pod restart every night at 02:00?`;
const complete = (sim: Sim, prompt: string) => post(`${sim.url}/v1/completions`, { model: MODEL, prompt, max_tokens: 4 });

let sims: Sim[];
let indexer: Indexer;
let grpcTarget: string;
let api: string;

beforeAll(async () => {
  // Pod 1 offloads to CPU and has a small GPU cache, so its copy of prompt A can end up CPU-only.
  sims = [await startSim(), await startSim({ kvOffload: 'offloading-connector', numGpuBlocksOverride: 40, numCpuBlocks: 400 }), await startSim()];
  indexer = await startIndexer({ ingest: { endpointsFile: writeEndpointsFile(sims) }, debugRoutes: true });
  grpcTarget = `127.0.0.1:${indexer.grpcPort}`;
  api = indexer.httpUrl;
  await waitFor(async () => (await fetch(`${api}/readyz`)).status === 200, 15_000, 'readiness');
});

afterAll(async () => {
  await indexer?.stop();
  for (const s of sims ?? []) await s.pod.stop();
});

describe('the consultant API fed by simulated vLLM pods', () => {
  it('answers llm-d\'s GetPodScores and plain HTTP alike: the serving pod first, a CPU copy below a GPU copy, 0 after a cache reset', async () => {
    const [gpuPod, cpuPod] = sims;
    expect((await complete(gpuPod!, promptA)).status).toBe(200);
    expect((await complete(cpuPod!, promptA)).status).toBe(200);
    // Push prompt A out of pod 1's GPU cache (its offloading connector keeps the CPU copy).
    const tokensA = (await post(`${cpuPod!.url}/tokenize`, { model: MODEL, prompt: promptA })).json['tokens'] as number[];
    for (let i = 0; i < 40; i++) {
      const view = (await post(`${cpuPod!.url}/sim/prefix`, { tokens: tokensA })).json as { gpuBlocks: number; cpuBlocks: number };
      if (view.gpuBlocks === 0 && view.cpuBlocks > 0) break;
      await complete(cpuPod!, `Unrelated filler prompt number ${i}: ${'lorem ipsum dolor sit amet '.repeat(20)}`);
    }
    expect((await post(`${cpuPod!.url}/sim/prefix`, { tokens: tokensA })).json).toMatchObject({ gpuBlocks: 0 });
    await caughtUp(indexer, sims);

    const llmd = loadLlmdIndexer();
    const client = new llmd.indexer.v1.IndexerService(grpcTarget, credentials.createInsecure());
    const question = `${SYSTEM}Question: how do I drain a node safely?`;
    const res = await call<GetPodScoresResponse__Output>((cb) => client.GetPodScores({ prompt: question, modelName: MODEL, podIdentifiers: [] }, cb));
    client.close();
    expect(res.scores.map((s) => s.pod)).toEqual([gpuPod!.id, cpuPod!.id]);
    expect(res.scores[0]!.score).toBeGreaterThan(res.scores[1]!.score);
    expect(res.scores[1]!.score).toBeGreaterThan(0);

    const http = await post(`${api}/v1/score/completions`, { model: MODEL, prompt: question, max_tokens: 10, temperature: 0.2 });
    expect(http.status).toBe(200);
    const scores = http.json['scores'] as { pod: string; score: number; matched_blocks: number; tiers: Record<string, number> }[];
    expect(scores.map((s) => [s.pod, s.score])).toEqual(res.scores.map((s) => [s.pod, s.score]));
    expect(scores[1]!.tiers).toEqual({ cpu: scores[1]!.matched_blocks });

    expect((await post(`${gpuPod!.url}/reset_prefix_cache`, {})).json).toMatchObject({ success: true });
    await caughtUp(indexer, sims);
    const after = (await post(`${api}/v1/score/completions`, { model: MODEL, prompt: question, pods: [gpuPod!.id] })).json;
    expect(after['scores']).toEqual([{ pod: gpuPod!.id, score: 0, normalized: 0, matched_blocks: 0, tiers: {}, known: true }]);
  });

  it('scores chat requests over kvix.indexer.v1, records routing decisions, and flags pods it has never heard of', async () => {
    const pod = sims[2]!;
    const messages = [{ role: 'system', content: SYSTEM }, { role: 'user', content: 'Which runbook covers node upgrades?' }];
    expect((await post(`${pod.url}/v1/chat/completions`, { model: MODEL, messages, max_tokens: 4 })).status).toBe(200);
    await caughtUp(indexer, sims);
    const kvix = loadKvixIndexer().kvix.indexer.v1;
    const client = new kvix.KvixIndexer(grpcTarget, credentials.createInsecure());
    const prompt = { model: MODEL, chat: { messagesJson: JSON.stringify([...messages.slice(0, 1), { role: 'user', content: 'And the one for GPU driver updates?' }]) } };
    const scored = await call<ScoreResponse__Output>((cb) => client.Score({ prompt, candidates: { pods: [pod.id, sims[0]!.id, '10.9.9.9:8000'] } }, cb));
    expect(scored.tokenization).toBe('local');
    expect(scored.scores.map((s) => [s.pod, s.known])).toEqual([
      [pod.id, true],
      [sims[0]!.id, true],
      ['10.9.9.9:8000', false],
    ]);
    expect(scored.scores[0]!.matchedBlocks).toBeGreaterThan(0);
    expect(scored.scores[0]!.matchedBlocks).toBeLessThan(scored.totalBlocks);

    // A routing decision makes the whole prompt count on the chosen pod until its events arrive.
    const decided = await call<{ inserted: number; blocks: number }>((cb) => client.RecordRoutingDecision({ prompt, pod: sims[0]!.id, ttlMs: 60_000 }, cb));
    expect(decided.blocks).toBe(scored.totalBlocks);
    const again = await call<ScoreResponse__Output>((cb) => client.Score({ prompt, candidates: { pods: [sims[0]!.id] } }, cb));
    expect(again.tokenizationCached).toBe(true);
    expect(again.scores[0]).toMatchObject({ pod: sims[0]!.id, matchedBlocks: scored.totalBlocks, tiers: { speculative: scored.totalBlocks } });

    const stats = await call<{ pods: { pod: string; speculative: string }[] }>((cb) => client.GetStats({}, cb));
    expect(stats.pods.find((p) => p.pod === sims[0]!.id)?.speculative).toBe(String(scored.totalBlocks));
    await expect(call((cb) => client.DumpPod({ pod: '10.9.9.9:8000' }, cb))).rejects.toMatchObject({ code: status.NOT_FOUND });
    client.close();
  });

  it('answers client mistakes with a precise gRPC status, never INTERNAL', async () => {
    const kvix = loadKvixIndexer().kvix.indexer.v1;
    const client = new kvix.KvixIndexer(grpcTarget, credentials.createInsecure());
    const code = (p: Promise<unknown>) => p.then(() => 'OK', (e: ServiceError) => status[e.code]);
    expect(await code(call((cb) => client.Score({ prompt: { model: 'no-such-model', completion: 'hi' } }, cb)))).toBe('NOT_FOUND');
    expect(await code(call((cb) => client.Score({ prompt: { model: MODEL, completion: 'hi' }, candidates: { pods: [] } }, cb)))).toBe('INVALID_ARGUMENT');
    expect(await code(call((cb) => client.Score({ prompt: { model: MODEL } }, cb)))).toBe('INVALID_ARGUMENT');
    expect(await code(call((cb) => client.Score({ prompt: { model: MODEL, chat: { messagesJson: '[{"role": ' } } }, cb)))).toBe('INVALID_ARGUMENT');
    expect(await code(call((cb) => client.Score({ prompt: { model: MODEL, tokenIds: { ids: Array.from({ length: 200_000 }, () => 1) } } }, cb)))).toBe('INVALID_ARGUMENT');
    client.close();
    const llmd = new (loadLlmdIndexer().indexer.v1.IndexerService)(grpcTarget, credentials.createInsecure());
    expect(await code(call((cb) => llmd.GetPodScores({ prompt: 'hi', modelName: '' }, cb)))).toBe('INVALID_ARGUMENT');
    // As llm-d answers it: an empty prompt holds no block anywhere.
    expect(await call<GetPodScoresResponse__Output>((cb) => llmd.GetPodScores({ prompt: '', modelName: MODEL }, cb))).toEqual({ scores: [] });
    llmd.close();
    // Bytes that are not a protobuf message at all.
    const raw = new Client(grpcTarget, credentials.createInsecure());
    const malformed = await code(
      new Promise((resolve, reject) =>
        raw.makeUnaryRequest('/kvix.indexer.v1.KvixIndexer/Score', (b: Buffer) => b, (b: Buffer) => b, Buffer.from([0x0a, 0xff, 0x01]), new Metadata(), (err, res) => (err ? reject(err) : resolve(res))),
      ),
    );
    raw.close();
    expect(malformed).toBe('INVALID_ARGUMENT');
  });

  it('answers HTTP client mistakes with a 4xx and a code, never a 500', async () => {
    const cases: [string, unknown, number, string][] = [
      ['/v1/score', '{"model": ', 400, 'INVALID_JSON'],
      ['/v1/score', { model: MODEL }, 400, 'INVALID_REQUEST'],
      ['/v1/score', { model: MODEL, prompt: 'a', token_ids: [1] }, 400, 'INVALID_REQUEST'],
      ['/v1/score', { model: MODEL, token_ids: [1, 2], pods: [] }, 400, 'EMPTY_CANDIDATES'],
      ['/v1/score', { model: MODEL, token_ids: [1, -1] }, 400, 'INVALID_REQUEST'],
      ['/v1/score', { model: MODEL, token_ids: [1], colour: 'red' }, 400, 'INVALID_REQUEST'],
      ['/v1/score/completions', { model: 'no-such-model', prompt: 'hello' }, 404, 'UNKNOWN_MODEL'],
      ['/v1/score/chat', { model: MODEL, messages: [] }, 400, 'INVALID_REQUEST'],
      // 2 MB: refused on its length, before any of it is tokenized (a 4 MiB body is the limit).
      ['/v1/score/completions', { model: MODEL, prompt: 'x'.repeat(2_000_000) }, 400, 'PROMPT_TOO_LONG'],
      ['/v1/routing-decisions', { model: MODEL, token_ids: [1, 2, 3], pod: 'a b' }, 400, 'INVALID_POD'],
    ];
    for (const [path, body, statusCode, code] of cases) {
      const r = await post(`${api}${path}`, body);
      expect({ path, body: typeof body === 'string' ? body : JSON.stringify(body).slice(0, 80), status: r.status, code: (r.json['error'] as { code: string }).code }).toEqual({ path, body: typeof body === 'string' ? body : JSON.stringify(body).slice(0, 80), status: statusCode, code });
    }
    // Rejections the HTTP framework makes carry the service's codes too, not the framework's.
    const framework: [RequestInit, number, string][] = [
      [{ headers: { 'content-type': 'application/json' } }, 400, 'INVALID_JSON'],
      [{ headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'model=m' }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
      [{ headers: { 'content-type': 'application/json' }, body: `"${'x'.repeat(33 * 1024 * 1024)}"` }, 413, 'BODY_TOO_LARGE'],
    ];
    for (const [init, statusCode, code] of framework) {
      const res = await fetch(`${api}/v1/score`, { method: 'POST', ...init });
      expect({ status: res.status, code: ((await res.json()) as { error: { code: string } }).error.code }).toEqual({ status: statusCode, code });
    }
    expect((await fetch(`${api}/v1/pods/ghost:1/entries`)).status).toBe(404);
    const metrics = await (await fetch(`${api}/metrics`)).text();
    expect(metrics).not.toMatch(/kvix_indexer_requests_total\{[^}]*code="INTERNAL"/);
  });

  it('reports health over gRPC and analytics over HTTP', async () => {
    const def = loadPackageDefinition(loadSync(healthProtoPath, { enums: String })) as unknown as { grpc: { health: { v1: { Health: new (t: string, c: ReturnType<typeof credentials.createInsecure>) => Client & { check(req: { service: string }, cb: Callback<{ status: string }>): void } } } } };
    const health = new def.grpc.health.v1.Health(grpcTarget, credentials.createInsecure());
    expect((await call<{ status: string }>((cb) => health.check({ service: 'indexer.v1.IndexerService' }, cb))).status).toBe('SERVING');
    health.close();
    const analytics = (await (await fetch(`${api}/v1/analytics`)).json()) as { scoring: { requests: number; by_model: Record<string, { requests: number }> }; top_prefixes: { blocks: number; requests: number; pods: string[] }[]; events: Record<string, { gaps: number }>; speculation: { active: number } };
    expect(analytics.scoring.requests).toBeGreaterThan(0);
    expect(analytics.scoring.by_model[MODEL]!.requests).toBeGreaterThan(0);
    expect(Object.keys(analytics.events).sort()).toEqual(sims.map((s) => s.id).sort());
    expect(analytics.top_prefixes.length).toBeGreaterThan(0);
    const metrics = await (await fetch(`${api}/metrics`)).text();
    expect(metrics).toMatch(/^llm_d_epp_prefix_indexer_hit_ratio_count\{[^}]*\} [1-9]/m);
    expect(metrics).toMatch(/^kvix_indexer_requests_total\{api="grpc",method="GetPodScores",code="OK"\} [1-9]/m);
    // The index's size, whole and per pod, as dashboards read it.
    const size = Number(/^llm_d_epp_prefix_indexer_size\{[^}]*\} (\d+)$/m.exec(metrics)?.[1]);
    const perPod = [...metrics.matchAll(/^kvix_index_pod_entries\{pod="([^"]+)",kind="(confirmed|speculative)"\} (\d+)$/gm)];
    expect(size).toBeGreaterThan(0);
    expect(perPod.reduce((sum, m) => sum + Number(m[3]), 0)).toBe(size);
    expect(perPod.every((m) => sims.some((s) => s.id === m[1]))).toBe(true);
  });
});
