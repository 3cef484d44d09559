import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { registerErrorHandlers, sendError } from '../src/index.js';

class TypedError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function app() {
  const a = Fastify({ logger: false, bodyLimit: 1024 });
  const serverErrors: string[] = [];
  registerErrorHandlers(a, { onServerError: (_req, c) => serverErrors.push(c.code) });
  a.post('/typed', async (req) => {
    const { code } = req.body as { code: string };
    throw new TypedError(code, `failed with ${code}`);
  });
  a.post('/zod', async (req) => z.object({ model: z.string() }).strict().parse(req.body));
  a.get('/bug', async () => {
    throw new Error('a kvix bug');
  });
  a.get('/own', async (_req, reply) => sendError(reply, 409, 'BUSY', 'try later'));
  return { a, serverErrors };
}

describe('HTTP errors share one shape, and client input is never a 500', () => {
  it('answers typed errors with the status of their code', async () => {
    const { a } = app();
    for (const [code, status] of [['UNKNOWN_MODEL', 404], ['PROMPT_TOO_LONG', 400], ['OVERLOADED', 503], ['INVALID_REQUEST', 400]] as const) {
      const r = await a.inject({ method: 'POST', url: '/typed', payload: { code } });
      expect(r.statusCode).toBe(status);
      expect(r.json()).toEqual({ error: { code, message: `failed with ${code}` } });
    }
  });

  it("answers Fastify's own rejections and zod errors as 4xx with stable codes", async () => {
    const { a, serverErrors } = app();
    const bad = await a.inject({ method: 'POST', url: '/typed', headers: { 'content-type': 'application/json' }, payload: '{"code":' });
    expect([bad.statusCode, bad.json().error.code]).toEqual([400, 'INVALID_JSON']);
    const big = await a.inject({ method: 'POST', url: '/typed', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ code: 'x'.repeat(2000) }) });
    expect([big.statusCode, big.json().error.code]).toEqual([413, 'BODY_TOO_LARGE']);
    const media = await a.inject({ method: 'POST', url: '/typed', headers: { 'content-type': 'text/csv' }, payload: 'a,b' });
    expect([media.statusCode, media.json().error.code]).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE']);
    const zod = await a.inject({ method: 'POST', url: '/zod', payload: { model: 1 } });
    expect(zod.statusCode).toBe(400);
    expect(zod.json()).toEqual({ error: { code: 'INVALID_REQUEST', message: expect.stringMatching(/^model: /) } });
    const missing = await a.inject({ method: 'GET', url: '/nothing?x=1' });
    expect([missing.statusCode, missing.json()]).toEqual([404, { error: { code: 'NOT_FOUND', message: 'no route GET /nothing' } }]);
    expect(serverErrors).toEqual([]);
  });

  it('answers a fault of its own as 500 INTERNAL, reported for logging', async () => {
    const { a, serverErrors } = app();
    const r = await a.inject({ method: 'GET', url: '/bug' });
    expect([r.statusCode, r.json()]).toEqual([500, { error: { code: 'INTERNAL', message: 'a kvix bug' } }]);
    expect(serverErrors).toEqual(['INTERNAL']);
    expect((await a.inject({ method: 'GET', url: '/own' })).json()).toEqual({ error: { code: 'BUSY', message: 'try later' } });
  });
});
