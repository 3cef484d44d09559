import type { EnvoyProcess } from '@kvix/envoy';
import { EnvoySim } from '@kvix/envoy-sim';
import { Epp, EppConfigSchema } from '@kvix/epp';
import { ceiling, waitFor } from '@kvix/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chat, endpointsFile, MODEL, silent, startRealEnvoy, startSim, type Sim } from '../support/stack.js';

// @kvix/envoy-sim stands in for Envoy where one cannot run (`npm start` without it). So that it
// cannot drift from Envoy again (it once took a destination list Envoy answers 503 to), the same
// exchanges go through a real Envoy running deploy/envoy/envoy.yaml and through envoy-sim configured
// the same way (the pool, FailOpen), to one endpoint picker, and must come out the same: status,
// headers, body, and how the ext_proc stream ended.

interface Exchange {
  name: string;
  method?: string;
  path: string;
  body?: unknown;
  headers?: Record<string, string>;
}

const exchanges: Exchange[] = [
  { name: 'a chat completion', path: '/v1/chat/completions', body: chat('Where is parcel 1?') },
  { name: 'a streamed chat completion of an alias (SSE, model mapped back)', path: '/v1/chat/completions', body: { ...chat('Where is parcel 2?'), model: 'support-bot', stream: true } },
  { name: 'a completion of an alias', path: '/v1/completions', body: { model: 'support-bot', prompt: 'The warehouse in Ghent', max_tokens: 4 } },
  { name: 'a body that is not JSON', path: '/v1/chat/completions', body: '{"model": "x", ' },
  { name: 'a chat without its messages', path: '/v1/chat/completions', body: { model: MODEL } },
  { name: 'a sheddable request while every pod is saturated', path: '/v1/chat/completions', body: chat('later'), headers: { 'x-llm-d-inference-objective': 'batch' } },
  { name: 'a model no pod serves', path: '/v1/chat/completions', body: { ...chat('hello'), model: 'no-such-model' } },
  { name: 'a request without a body', method: 'GET', path: '/v1/models' },
  { name: 'a 1.2 MiB prompt', path: '/v1/completions', body: { model: MODEL, max_tokens: 2, prompt: 'word '.repeat(250_000) } },
];

interface Outcome {
  status: number;
  headers: Record<string, string | null>;
  body: string;
  /** How the endpoint picker saw the ext_proc stream end. */
  streamEnd: string;
}

/** Headers both must agree on; framing (content-length vs chunked), date and proxy-specific ones may differ. */
const COMPARED = ['content-type', 'x-llm-d-request-dropped-reason', 'x-session-token'];

/** Ids and timestamps differ per request, and cache hits with the pod's state. */
function normalize(text: string): string {
  return text
    .replace(/"id":"[^"]*"/g, '"id":"*"')
    .replace(/"created":\d+/g, '"created":*')
    .replace(/"cached_tokens":\d+/g, '"cached_tokens":*');
}

let sims: Sim[] = [];
let epp: Epp;
let envoy: EnvoyProcess;
let sim: EnvoySim;

async function streamEnds(): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${epp.metricsPort}/metrics`)).text();
  return Object.fromEntries([...text.matchAll(/^kvix_epp_ext_proc_streams_total\{outcome="([^"]+)"\} (\d+)/gm)].map((m) => [m[1]!, Number(m[2])]));
}

async function run(base: string, x: Exchange): Promise<Outcome> {
  const before = await streamEnds();
  const total = (ends: Record<string, number>): number => Object.values(ends).reduce((a, b) => a + b, 0);
  const res = await fetch(`${base}${x.path}`, {
    method: x.method ?? 'POST',
    headers: { ...(x.body !== undefined ? { 'content-type': 'application/json' } : {}), ...(x.headers ?? {}) },
    ...(x.body !== undefined ? { body: typeof x.body === 'string' ? x.body : JSON.stringify(x.body) } : {}),
  });
  const body = normalize(await res.text());
  const headers = Object.fromEntries(COMPARED.map((h) => [h, res.headers.get(h)]));
  headers['x-kvix-endpoint'] = res.headers.get('x-kvix-endpoint') === null ? null : 'present';
  const after = await waitFor(async () => {
    const now = await streamEnds();
    return total(now) > total(before) ? now : undefined;
  }, 10_000, `the stream of "${x.name}" to end`);
  const streamEnd = Object.keys(after).filter((k) => (after[k] ?? 0) > (before[k] ?? 0)).join(',');
  return { status: res.status, headers, body, streamEnd };
}

beforeAll(async () => {
  sims = [await startSim(), await startSim()];
  const config = EppConfigSchema.parse({
    logLevel: 'silent',
    gateway: { enabled: false },
    extProc: { host: '127.0.0.1', port: 0 },
    metrics: { host: '127.0.0.1', port: 0 },
    ingest: { endpointsFile: endpointsFile(sims), readinessTimeoutMs: 5000 },
    tokenization: { workers: 1 },
    scheduler: {
      plugins: [{ type: 'queue-scorer' }, { type: 'max-score-picker' }],
      schedulingProfiles: [{ name: 'default', plugins: [{ pluginRef: 'queue-scorer' }, { pluginRef: 'max-score-picker' }] }],
      modelRewrites: [{ model: 'support-bot', targets: [{ model: MODEL, weight: 1 }] }],
      objectives: [{ name: 'batch', priority: -1 }],
      saturation: { queueDepthThreshold: 1000, kvCacheUtilThreshold: 0 },
    },
  });
  epp = await Epp.start(config, silent);
  await waitFor(async () => (await fetch(`http://127.0.0.1:${epp.metricsPort}/readyz`)).status === 200, 15_000, 'the EPP ready');
  const extProc = `127.0.0.1:${epp.extProc!.port}`;
  envoy = await startRealEnvoy([extProc], sims.map((s) => s.id));
  sim = await EnvoySim.start({ extProcTarget: extProc, failureModeAllow: true, defaultUpstream: sims.map((s) => s.id) });
}, ceiling(120_000));

afterAll(async () => {
  await sim?.close();
  await envoy?.stop();
  await epp?.stop();
  for (const s of sims) await s.pod.stop();
}, ceiling(60_000));

describe('envoy-sim and a real Envoy running deploy/envoy/envoy.yaml, in front of one endpoint picker', () => {
  it.each(exchanges)('answer $name alike', async (x) => {
    const throughEnvoy = await run(envoy.url(), x);
    const throughSim = await run(sim.url, x);
    expect(throughSim).toEqual(throughEnvoy);
  });
});
