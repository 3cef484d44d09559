import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Epp, EppConfigSchema } from '../src/index.js';

const silent = pino({ level: 'silent' });
let epp: Epp;
let base: string;

beforeAll(async () => {
  epp = await Epp.start(
    EppConfigSchema.parse({
      logLevel: 'silent',
      gateway: { enabled: false },
      extProc: { enabled: false },
      metrics: { host: '127.0.0.1', port: 0 },
      ingest: { pods: [] },
      tokenization: { workers: 0, maxPromptTokens: 8 },
      latencyPredictor: { enabled: false },
      debugRoutes: true,
    }),
    silent,
  );
  base = `http://127.0.0.1:${epp.metricsPort}`;
});

afterAll(async () => {
  await epp?.stop();
});

async function post(path: string, body: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  return { status: res.status, body: await res.json() };
}

describe('the debug API answers client mistakes with a 4xx and the common error body', () => {
  it('an unknown model is 404 UNKNOWN_MODEL, not a 500', async () => {
    const r = await post('/debug/score', JSON.stringify({ model: 'no-such-model', prompt: 'hello' }));
    expect(r.status).toBe(404);
    expect(r.body).toMatchObject({ error: { code: 'UNKNOWN_MODEL', message: expect.any(String) } });
  });

  it('a prompt longer than the limit is 400 PROMPT_TOO_LONG', async () => {
    const r = await post('/debug/score', JSON.stringify({ model: 'Qwen/Qwen3-0.6B', prompt: 'word '.repeat(200) }));
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ error: { code: 'PROMPT_TOO_LONG' } });
  });

  it('invalid JSON, an invalid body and an unknown route get their own codes', async () => {
    expect(await post('/debug/score', '{"model":')).toMatchObject({ status: 400, body: { error: { code: 'INVALID_JSON' } } });
    expect(await post('/debug/score', JSON.stringify({ model: 'm' }))).toMatchObject({ status: 400, body: { error: { code: 'INVALID_REQUEST' } } });
    expect(await post('/debug/nothing', '{}')).toMatchObject({ status: 404, body: { error: { code: 'NOT_FOUND', message: 'no route POST /debug/nothing' } } });
  });
});
