import { waitFor } from '@kvix/test-support';
import { describe, expect, it } from 'vitest';
import { cleanupsAfterEach } from '../support/cleanups.js';
import { chat, FRONTS, MODEL, send, startSim, startStack, type EnvoyOptions, type Front, type Sim, type Stack } from '../support/stack.js';

const cleanups = cleanupsAfterEach();

async function fleet(n: number, overrides = {}): Promise<Sim[]> {
  const sims: Sim[] = [];
  for (let i = 0; i < n; i++) {
    const s = await startSim(overrides);
    sims.push(s);
    cleanups.push(() => s.pod.stop());
  }
  return sims;
}

async function stack(front: Front, sims: Sim[], extra: Record<string, unknown> = {}, envoy: EnvoyOptions = {}): Promise<Stack> {
  const s = await startStack(front, sims, extra, envoy);
  cleanups.push(() => s.stop());
  return s;
}

const loadOnly = (extra: Record<string, unknown> = {}) => ({
  scheduler: { plugins: [{ type: 'queue-scorer' }, { type: 'max-score-picker' }], schedulingProfiles: [{ name: 'default', plugins: [{ pluginRef: 'queue-scorer' }, { pluginRef: 'max-score-picker' }] }], ...extra },
});

describe.each(FRONTS)('routing through the %s', (front) => {
  it('sends requests that share a long prefix to the pod holding it', async () => {
    const sims = await fleet(3);
    const { base } = await stack(front, sims);
    const first = await send(base, '/v1/chat/completions', chat('Where is parcel 1?'));
    expect(first.status).toBe(200);
    expect(sims.map((s) => s.id)).toContain(first.endpoint);
    for (let i = 2; i <= 6; i++) {
      const next = await send(base, '/v1/chat/completions', chat(`Where is parcel ${i}?`));
      expect({ status: next.status, endpoint: next.endpoint }).toEqual({ status: 200, endpoint: first.endpoint });
    }
  });

  it('spreads a burst of same-prefix requests over pods instead of queueing them all on one', async () => {
    // Real-time pods with room for 4 sequences and a small KV cache, and long answers: a burst
    // fills the KV cache of the pod it lands on (4 running share the ~9 system-prompt blocks and
    // hold ~5 of their own: ~29 of 32 blocks) and queues there, which the load scorers see. With
    // the cache half full instead, prefix affinity (weight 3) rightly outweighs the load (2 + 2).
    const sims = await fleet(3, { timeScale: 1, maxNumSeqs: 4, numGpuBlocksOverride: 32 });
    const { base } = await stack(front, sims);
    expect((await send(base, '/v1/chat/completions', chat('warm-up'))).status).toBe(200);
    const waves = [];
    for (let wave = 0; wave < 3; wave++) {
      waves.push(Promise.all(Array.from({ length: 8 }, (_, i) => send(base, '/v1/chat/completions', chat(`Question ${wave}-${i}: how long does customs take?`, { max_tokens: 48 })))));
      await new Promise((r) => setTimeout(r, 300));
    }
    const answers = (await Promise.all(waves)).flat();
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
    const perPod = new Map<string, number>();
    for (const a of answers) perPod.set(a.endpoint!, (perPod.get(a.endpoint!) ?? 0) + 1);
    expect(perPod.size).toBeGreaterThan(1);
    expect(Math.max(...perPod.values())).toBeLessThan(answers.length);
  });

  it('loses no request when the chosen pod dies between requests: the fallback list serves them', async () => {
    const sims = await fleet(3);
    const s = await stack(front, sims);
    const first = await send(s.base, '/v1/chat/completions', chat('Which carrier is fastest?'));
    const victim = sims.find((x) => x.id === first.endpoint)!;
    await victim.pod.stop();
    const after = [];
    for (let i = 0; i < 5; i++) after.push(await send(s.base, '/v1/chat/completions', chat(`Which carrier is fastest for order ${i}?`)));
    expect(after.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
    expect(after.filter((a) => a.endpoint === victim.id)).toEqual([]);
    const status = (await (await fetch(`${s.metrics}/debug/endpoints`)).json()) as { endpoints: { id: string; healthy: boolean }[] };
    expect(status.endpoints.find((x) => x.id === victim.id)?.healthy).toBe(false);
  });

  it('keeps serving during traffic while a pod is killed mid-stream, failing only what that pod had in flight', async () => {
    const sims = await fleet(3, { timeScale: 5 });
    const s = await stack(front, sims, loadOnly());
    let stop = false;
    const results: number[] = [];
    const workers = Array.from({ length: 4 }, async (_, w) => {
      for (let i = 0; !stop; i++) results.push((await send(s.base, '/v1/chat/completions', chat(`worker ${w} request ${i}`, { max_tokens: 8 }))).status);
    });
    await waitFor(() => results.length >= 8, 20_000, 'traffic to flow');
    await sims[1]!.pod.stop();
    const killedAt = results.length;
    await waitFor(() => results.length >= killedAt + 20, 30_000, 'traffic after the kill');
    stop = true;
    await Promise.all(workers);
    // At most the 4 requests in flight on the killed pod can fail; everything after is served.
    expect(results.slice(killedAt).filter((c) => c !== 200).length).toBeLessThanOrEqual(4);
    expect(results.slice(-10)).toEqual(Array.from({ length: 10 }, () => 200));
  });

  it('serves an alias by its target model and answers in the alias\'s name, streaming or not', async () => {
    const sims = await fleet(2);
    const { base } = await stack(front, sims, loadOnly({ modelRewrites: [{ model: 'support-bot', targets: [{ model: MODEL, weight: 1 }] }] }));
    const plain = await send(base, '/v1/chat/completions', { ...chat('Hi'), model: 'support-bot' });
    expect(plain.status).toBe(200);
    expect(plain.json?.['model']).toBe('support-bot');
    const streamed = await send(base, '/v1/chat/completions', { ...chat('Hi again'), model: 'support-bot', stream: true });
    expect(streamed.status).toBe(200);
    const events = streamed.text.split('\n').filter((l) => l.startsWith('data: {'));
    expect(events.length).toBeGreaterThan(1);
    for (const e of events) expect((JSON.parse(e.slice(6)) as { model: string }).model).toBe('support-bot');
    expect(streamed.text.trimEnd().endsWith('data: [DONE]')).toBe(true);
  });

  it('answers malformed requests with a 400 and keeps serving', async () => {
    const sims = await fleet(1);
    const s = await stack(front, sims);
    const cases: [unknown, string][] = [
      ['{"model": "x", ', 'INVALID_JSON'],
      ['[1, 2]', 'INVALID_REQUEST'],
      [{ messages: [{ role: 'user', content: 'hi' }] }, 'INVALID_REQUEST'],
      [{ model: MODEL, messages: 'hello' }, 'INVALID_REQUEST'],
    ];
    for (const [body, code] of cases) {
      const a = await send(s.base, '/v1/chat/completions', body);
      expect({ status: a.status, code: (a.json?.['error'] as { code: string } | undefined)?.code }).toEqual({ status: 400, code });
    }
    expect((await send(s.base, '/v1/completions', { model: MODEL, prompt: 42 })).status).toBe(400);
    expect((await send(s.base, '/v1/chat/completions', chat('still there?'))).status).toBe(200);
    expect((await fetch(`${s.metrics}/readyz`)).status).toBe(200);
  });

  it('sheds sheddable requests with 429 when every pod is saturated, and answers 503 when no pod is left', async () => {
    const sims = await fleet(1);
    const { base } = await stack(front, sims, loadOnly({ objectives: [{ name: 'batch', priority: -1 }], saturation: { queueDepthThreshold: 1000, kvCacheUtilThreshold: 0 } }));
    const shed = await send(base, '/v1/chat/completions', chat('later'), { 'x-llm-d-inference-objective': 'batch' });
    expect(shed.status).toBe(429);
    expect(shed.headers.get('x-llm-d-request-dropped-reason')).toBe('rejected-saturated');
    expect((await send(base, '/v1/chat/completions', chat('now'))).status).toBe(200);
    await sims[0]!.pod.stop();
    await waitFor(async () => (await send(base, '/v1/chat/completions', chat('anyone?'))).status === 503, 10_000, 'a 503 once the only pod is gone');
  });
});

describe('Envoy specifics', () => {
  it('picks only within the subset the proxy allows', async () => {
    const sims = await fleet(3);
    const allowed = sims[2]!.id;
    const { base } = await stack('envoy', sims, loadOnly(), { subsetHint: [allowed] });
    for (let i = 0; i < 4; i++) expect((await send(base, '/v1/chat/completions', chat(`q${i}`))).endpoint).toBe(allowed);
  });
});

describe('gateway specifics', () => {
  it('lists the models and aliases it serves', async () => {
    const sims = await fleet(1);
    const { base } = await stack('gateway', sims, loadOnly({ modelRewrites: [{ model: 'support-bot', targets: [{ model: MODEL, weight: 1 }] }] }));
    const models = (await (await fetch(`${base}/v1/models`)).json()) as { data: { id: string }[] };
    expect(models.data.map((m) => m.id)).toEqual([MODEL, 'support-bot']);
    expect((await send(base, '/v1/embeddings', { model: MODEL, input: 'x' })).status).toBe(404);
  });
});
