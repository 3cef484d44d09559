import { request } from 'node:http';
import { ceiling, freePort, waitFor } from '@kvix/test-support';
import { afterEach, describe, expect, it } from 'vitest';
import { EnvoySim, EnvoySimError, type EnvoySimOptions } from '../src/index.js';
import { echoUpstream, headersOf, nextReport, send, startProcessor, startUpstream, type ProcessorScript, type TestProcessor, type TestUpstream } from './harness.js';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()?.();
});

async function processor(script: ProcessorScript): Promise<TestProcessor> {
  const p = await startProcessor(script);
  closers.push(() => p.close());
  return p;
}
async function upstream(u: Promise<TestUpstream>): Promise<TestUpstream> {
  const started = await u;
  closers.push(() => started.close());
  return started;
}
async function simFor(extProcTarget: string, options: Partial<EnvoySimOptions> = {}): Promise<EnvoySim> {
  const sim = await EnvoySim.start({ extProcTarget, ...options });
  closers.push(() => sim.close());
  return sim;
}
/** A host:port nobody listens on: connecting to it is refused. */
const deadEndpoint = async () => `127.0.0.1:${await freePort()}`;

const COMPLETION = JSON.stringify({ model: 'alias', prompt: 'Hello, world, this is a prompt long enough to span chunks' });

describe('request path', () => {
  it('routes to the endpoint the processor picks and forwards the body it streamed back', async () => {
    const vllm = await upstream(echoUpstream());
    const epp = await processor({ endpoints: [vllm.address], rewriteRequest: (b) => b.replace('"alias"', '"target-model"') });
    const sim = await simFor(epp.target, { chunkSize: 16 });
    const report = nextReport(sim);

    const res = await send(sim, 'POST', '/v1/completions', COMPLETION, { 'x-drop-me': '1' });

    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ got: COMPLETION.replace('"alias"', '"target-model"'), path: '/v1/completions' });
    expect(res.headers['x-envoy-sim-upstream']).toBe(vllm.address);
    expect(res.headers['x-processed']).toBe('yes');
    const seenUpstream = vllm.requests[0];
    expect(seenUpstream?.headers['x-gateway-destination-endpoint']).toBe(vllm.address);
    expect(seenUpstream?.headers['x-drop-me']).toBeUndefined();
    // The body changed length: the client's content-length must not reach the upstream.
    expect(seenUpstream?.headers['content-length']).toBeUndefined();

    const r = await report;
    expect(r).toMatchObject({ status: 200, outcome: 'proxied', processor: 'processed', endpoints: [vllm.address], served: vllm.address, routeCacheCleared: true });
    expect(r.dynamicMetadata['envoy.lb']).toEqual({ 'x-gateway-destination-endpoint': vllm.address });
  });

  it('sends request headers as Envoy does: pseudo-headers, raw_value, end_of_stream only without a body', async () => {
    const vllm = await upstream(echoUpstream());
    const epp = await processor({ endpoints: [vllm.address] });
    const sim = await simFor(epp.target, { chunkSize: 16 });

    await send(sim, 'POST', '/v1/completions?x=1', COMPLETION);
    await send(sim, 'GET', '/v1/models');

    const [post, get] = epp.streams;
    const headers = new Map(headersOf(post));
    expect(headers.get(':method')).toBe('POST');
    expect(headers.get(':path')).toBe('/v1/completions?x=1');
    expect(headers.get(':authority')).toBe(new URL(sim.url).host);
    expect(headers.get(':scheme')).toBe('http');
    expect(headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(headers.has('host')).toBe(false);
    const first = post?.messages[0];
    expect(first?.requestHeaders?.headers?.headers.every((h) => h.value === '' && h.rawValue.length > 0)).toBe(true);
    expect(first?.requestHeaders?.endOfStream).toBe(false);
    expect(first?.protocolConfig?.requestBodyMode).toBe('FULL_DUPLEX_STREAMED');
    expect(first?.protocolConfig?.responseBodyMode).toBe('FULL_DUPLEX_STREAMED');
    expect(get?.messages[0]?.requestHeaders?.endOfStream).toBe(true);
    expect(get?.messages.some((m) => m.request === 'requestBody')).toBe(false);
  });

  it('streams the body in chunks of at most chunkSize, the last one marked end_of_stream, and half-closes at the end', async () => {
    const vllm = await upstream(echoUpstream());
    const epp = await processor({ endpoints: [vllm.address] });
    const sim = await simFor(epp.target, { chunkSize: 16 });

    await send(sim, 'POST', '/v1/completions', COMPLETION);

    const chunks = epp.streams[0]?.messages.filter((m) => m.request === 'requestBody').map((m) => m.requestBody) ?? [];
    expect(chunks.length).toBe(Math.ceil(Buffer.byteLength(COMPLETION) / 16));
    expect(chunks.every((c) => (c?.body.length ?? 0) <= 16)).toBe(true);
    expect(Buffer.concat(chunks.map((c) => c?.body ?? Buffer.alloc(0))).toString()).toBe(COMPLETION);
    expect(chunks.map((c) => c?.endOfStream)).toEqual([...Array(chunks.length - 1).fill(false), true]);
    await expect.poll(() => epp.streams[0]?.halfClosed).toBe(true);
  });

  it('sends the configured metadata_context (the subset hint) with the request headers', async () => {
    const vllm = await upstream(echoUpstream());
    const epp = await processor({ endpoints: [vllm.address] });
    const subset = { 'envoy.lb.subset_hint': { 'x-gateway-destination-endpoint-subset': [vllm.address, '10.0.0.9:8000'] } };
    const sim = await simFor(epp.target, { metadataContext: subset });

    await send(sim, 'POST', '/v1/completions', COMPLETION);

    const hint = epp.streams[0]?.messages[0]?.metadataContext?.filterMetadata['envoy.lb.subset_hint'];
    expect(hint?.fields['x-gateway-destination-endpoint-subset']?.listValue?.values.map((v) => v.stringValue)).toEqual([vllm.address, '10.0.0.9:8000']);
  });

  it('with a pool, routes on the envoy.lb metadata list (override_host); without one, on the header alone (ORIGINAL_DST)', async () => {
    const vllm = await upstream(echoUpstream());
    const epp = await processor({ endpoints: [vllm.address], endpointsInMetadataOnly: true });
    const pooled = await simFor(epp.target, { defaultUpstream: [vllm.address] });
    const res = await send(pooled, 'POST', '/v1/completions', COMPLETION);
    expect(res.status).toBe(200);
    expect(res.headers['x-envoy-sim-upstream']).toBe(vllm.address);

    const originalDst = await simFor(epp.target);
    const report = nextReport(originalDst);
    expect((await send(originalDst, 'POST', '/v1/completions', COMPLETION)).status).toBe(503);
    expect((await report).outcome).toBe('no-route');
  });

  it('without a pool, finds no host in a comma-separated header list: 503, as Envoy\'s ORIGINAL_DST', async () => {
    const vllm = await upstream(echoUpstream());
    const epp = await processor({ endpoints: [vllm.address, vllm.address] });
    const sim = await simFor(epp.target);
    const report = nextReport(sim);
    expect((await send(sim, 'POST', '/v1/completions', COMPLETION)).status).toBe(503);
    const r = await report;
    expect(r.outcome).toBe('no-route');
    expect(r.notes.join('\n')).toContain('ORIGINAL_DST reads one address');
    expect(vllm.requests).toHaveLength(0);
  });
});

describe('fallback over the destination list (the pool cluster\'s override_host policy and the route\'s retries)', () => {
  it('tries the next endpoint when the first refuses the connection', async () => {
    const vllm = await upstream(echoUpstream());
    const dead = await deadEndpoint();
    const epp = await processor({ endpoints: [dead, vllm.address] });
    const sim = await simFor(epp.target, { defaultUpstream: [dead, vllm.address] });
    const report = nextReport(sim);

    const res = await send(sim, 'POST', '/v1/completions', COMPLETION);

    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).got).toBe(COMPLETION);
    const r = await report;
    expect(r.endpoints).toEqual([dead, vllm.address]);
    expect(r.served).toBe(vllm.address);
    expect(r.attempts.map((a) => a.endpoint)).toEqual([dead, vllm.address]);
    expect(r.attempts[0]?.error).toMatch(/ECONNREFUSED/);
    expect(r.attempts[1]?.error).toBeUndefined();
    // The processor learns which endpoint served.
    const served = epp.streams[0]?.messages.find((m) => m.request === 'responseHeaders')?.metadataContext?.filterMetadata['envoy.lb'];
    expect(served?.fields['x-gateway-destination-endpoint-served']?.stringValue).toBe(vllm.address);
  });

  it('answers 503 with the endpoints it tried when none accepts a connection', async () => {
    const dead = [await deadEndpoint(), await deadEndpoint()];
    const epp = await processor({ endpoints: dead });
    const sim = await simFor(epp.target, { defaultUpstream: dead });
    const report = nextReport(sim);

    const res = await send(sim, 'POST', '/v1/completions', COMPLETION);

    expect(res.status).toBe(503);
    expect(res.body).toContain('upstream connect error');
    for (const endpoint of dead) expect(res.body).toContain(endpoint);
    expect((await report).outcome).toBe('upstream-unavailable');
  });

  it('retries a pod that resets the connection before answering on the next endpoint, up to num_retries', async () => {
    const vllm = await upstream(echoUpstream());
    const resetting = await upstream(startUpstream((_req, res) => res.socket?.destroy()));
    const epp = await processor({ endpoints: [resetting.address, vllm.address] });
    const sim = await simFor(epp.target, { defaultUpstream: [resetting.address, vllm.address] });
    const report = nextReport(sim);
    const res = await send(sim, 'POST', '/v1/completions', COMPLETION);
    expect(res.status).toBe(200);
    const r = await report;
    expect(r.served).toBe(vllm.address);
    expect(r.attempts[0]).toMatchObject({ endpoint: resetting.address, error: expect.stringMatching(/reset before the response/) });
  });

  it('answers 503 "no healthy upstream" when the processor names no usable endpoint', async () => {
    const epp = await processor({ endpoints: ['not-an-endpoint'] });
    const sim = await simFor(epp.target);
    const report = nextReport(sim);

    const res = await send(sim, 'POST', '/v1/completions', COMPLETION);

    expect(res.status).toBe(503);
    expect(res.body).toContain('no healthy upstream');
    const r = await report;
    expect(r.outcome).toBe('no-route');
    expect(r.notes.join('\n')).toContain('not-an-endpoint');
  });
});

describe('response path', () => {
  it('streams SSE chunks to the client as the upstream sends them, through the processor', { timeout: ceiling(15_000) }, async () => {
    const events: string[] = [];
    let releaseLast: () => void = () => {};
    const lastMayGo = new Promise<void>((resolve) => (releaseLast = resolve));
    const vllm = await upstream(
      startUpstream((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: {"n":1}\n\n');
        events.push('upstream sent first');
        // The last event waits for the client to have seen the first: a proxy that buffers the
        // body never delivers it, and the test fails on its timeout instead of passing.
        void lastMayGo.then(() => {
          events.push('upstream sends last');
          res.end('data: [DONE]\n\n');
        });
      }),
    );
    const epp = await processor({ endpoints: [vllm.address], rewriteResponseChunk: (c) => c.replace('"n"', '"seen-by-epp"') });
    const sim = await simFor(epp.target);

    const body = await new Promise<string>((resolve, reject) => {
      const req = request(`${sim.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => {
          text += c.toString();
          if (text.includes('"seen-by-epp":1') && !events.includes('client got first')) {
            events.push('client got first');
            releaseLast();
          }
        });
        res.on('end', () => resolve(text));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(JSON.stringify({ model: 'm', prompt: 'p', stream: true }));
    });

    expect(events).toEqual(['upstream sent first', 'client got first', 'upstream sends last']);
    expect(body).toBe('data: {"seen-by-epp":1}\n\ndata: [DONE]\n\n');
    const responseChunks = epp.streams[0]?.messages.filter((m) => m.request === 'responseBody').map((m) => m.responseBody) ?? [];
    expect(responseChunks.at(-1)?.endOfStream).toBe(true);
    expect(responseChunks.slice(0, -1).every((c) => c?.endOfStream === false)).toBe(true);
  });

  it('sends upstream trailers as response_trailers and gives the client the trailers the processor answers', async () => {
    const vllm = await upstream(
      startUpstream((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-usage' });
        res.write('tokens');
        res.addTrailers({ 'x-usage': '12' });
        res.end();
      }),
    );
    const epp = await processor({ endpoints: [vllm.address] });
    const sim = await simFor(epp.target);

    const trailers = await new Promise<NodeJS.Dict<string>>((resolve, reject) => {
      const req = request(`${sim.url}/v1/completions`, { method: 'POST' }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.trailers));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(COMPLETION);
    });

    expect(trailers['x-usage']).toBe('12');
    const messages = epp.streams[0]?.messages ?? [];
    const seenTrailers = messages.find((m) => m.request === 'responseTrailers')?.responseTrailers?.trailers?.headers ?? [];
    expect(seenTrailers.map((h) => [h.key, h.rawValue.toString()])).toEqual([['x-usage', '12']]);
    // With trailers coming, no body chunk claims to be the last.
    expect(messages.filter((m) => m.request === 'responseBody').every((m) => m.responseBody?.endOfStream === false)).toBe(true);
  });

  it('sends response_headers with :status and applies the processor header mutation', async () => {
    const vllm = await upstream(
      startUpstream((_req, res) => {
        res.writeHead(201, { 'content-type': 'application/json', 'x-upstream': 'u' });
        res.end('{}');
      }),
    );
    const epp = await processor({ endpoints: [vllm.address] });
    const sim = await simFor(epp.target);

    const res = await send(sim, 'POST', '/v1/completions', COMPLETION);

    expect(res.status).toBe(201);
    expect(res.headers['x-processed']).toBe('yes');
    expect(res.headers['x-upstream']).toBe('u');
    const headers = new Map(headersOf(epp.streams[0], 'responseHeaders'));
    expect(headers.get(':status')).toBe('201');
    expect(headers.get('x-upstream')).toBe('u');
  });
});

describe('processor answers that end the exchange', () => {
  it('answers the client with an immediate_response and never contacts an upstream', async () => {
    const vllm = await upstream(echoUpstream());
    const epp = await processor({
      endpoints: [vllm.address],
      immediate: {
        immediateResponse: {
          status: { code: 'TooManyRequests' },
          headers: { setHeaders: [{ header: { key: 'x-llm-d-request-dropped-reason', rawValue: Buffer.from('rejected-saturated') } }] },
          body: Buffer.from('shed'),
        },
      },
    });
    const sim = await simFor(epp.target);
    const report = nextReport(sim);

    const res = await send(sim, 'POST', '/v1/completions', COMPLETION);

    expect(res.status).toBe(429);
    expect(res.body).toBe('shed');
    expect(res.headers['x-llm-d-request-dropped-reason']).toBe('rejected-saturated');
    expect(res.headers['content-type']).toBe('text/plain');
    expect(vllm.requests).toHaveLength(0);
    expect((await report).outcome).toBe('immediate-response');
  });

  it('carries on without a processor that closes the stream before answering: 503 without a default upstream', async () => {
    const epp = await processor({ closeOnRequestHeaders: true });
    const sim = await simFor(epp.target);
    const report = nextReport(sim);

    const res = await send(sim, 'POST', '/v1/completions', COMPLETION);

    expect(res.status).toBe(503);
    expect(await report).toMatchObject({ outcome: 'no-route', processor: 'closed-early' });
  });

  it('forwards the request unmodified to the default upstream when the processor closes early', async () => {
    const vllm = await upstream(echoUpstream());
    const epp = await processor({ closeOnRequestHeaders: true });
    const sim = await simFor(epp.target, { defaultUpstream: vllm.address });
    const report = nextReport(sim);

    const res = await send(sim, 'POST', '/v1/completions', COMPLETION, { 'x-drop-me': 'kept' });

    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).got).toBe(COMPLETION);
    expect(vllm.requests[0]?.headers['x-drop-me']).toBe('kept');
    expect(vllm.requests[0]?.headers['content-length']).toBe(String(Buffer.byteLength(COMPLETION)));
    expect(res.headers['x-processed']).toBeUndefined();
    expect(await report).toMatchObject({ outcome: 'proxied', processor: 'closed-early', served: vllm.address });
  });

  it('answers 504 when the processor has the whole request and stays silent past the message timeout', async () => {
    const epp = await processor({ silent: true });
    const sim = await simFor(epp.target, { messageTimeoutMs: 200 });
    const report = nextReport(sim);

    const res = await send(sim, 'POST', '/v1/completions', COMPLETION);

    expect(res.status).toBe(504);
    expect(await report).toMatchObject({ outcome: 'processor-timeout', processor: 'failed' });
  });
});

describe('the message timeout', () => {
  it('does not run while the processor is still waiting for the body', async () => {
    const vllm = await upstream(echoUpstream());
    const epp = await processor({ endpoints: [vllm.address] });
    // Long enough (scaled for the machine's load) for the processor to answer once it has the whole
    // body: that answer is not what this test is about.
    const timeoutMs = ceiling(250);
    const sim = await simFor(epp.target, { messageTimeoutMs: timeoutMs });
    const half = Math.floor(COMPLETION.length / 2);

    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${sim.url}/v1/completions`, { method: 'POST', headers: { 'content-length': String(COMPLETION.length) } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.write(COMPLETION.slice(0, half));
      // Once the processor holds part of the body, a pause longer than the timeout. The simulator runs
      // in this process and Node fires timers in the order they expire, so a watchdog started at the
      // request headers (earlier) would fire, and answer 504, before this one ends the pause.
      waitFor(() => epp.streams[0]?.messages.some((m) => m.request === 'requestBody'), 10_000, 'the first body chunk at the processor').then(
        () => setTimeout(() => req.end(COMPLETION.slice(half)), timeoutMs * 1.5),
        reject,
      );
    });

    expect(status).toBe(200);
    expect(JSON.parse(vllm.requests[0]?.body ?? '{}')).toEqual(JSON.parse(COMPLETION));
  });
});

describe('an unreachable processor', () => {
  it('fails the request with 500 by default', async () => {
    const sim = await simFor(await deadEndpoint());
    const report = nextReport(sim);

    const res = await send(sim, 'POST', '/v1/completions', COMPLETION);

    expect(res.status).toBe(500);
    expect(await report).toMatchObject({ outcome: 'processor-error', processor: 'failed' });
  });

  it('is skipped under failureModeAllow: the request goes to the default upstream', async () => {
    const vllm = await upstream(echoUpstream());
    const sim = await simFor(await deadEndpoint(), { failureModeAllow: true, defaultUpstream: vllm.address });
    const report = nextReport(sim);

    const res = await send(sim, 'POST', '/v1/completions', COMPLETION);

    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).got).toBe(COMPLETION);
    expect(await report).toMatchObject({ outcome: 'proxied', processor: 'skipped', served: vllm.address });
  });
});

describe('header mutations Envoy treats strictly', () => {
  it('ignores `value` (Envoy reads raw_value only): the destination header is empty, so there is no route', async () => {
    const vllm = await upstream(echoUpstream());
    const epp = await processor({ endpoints: [vllm.address], useStringValue: true });
    const sim = await simFor(epp.target);
    const report = nextReport(sim);

    const res = await send(sim, 'POST', '/v1/completions', COMPLETION);

    // The metadata still names the endpoint, but ORIGINAL_DST reads the (now empty) header first.
    expect(res.status).toBe(503);
    const r = await report;
    expect(r.outcome).toBe('no-route');
    expect(r.notes.join('\n')).toContain('raw_value');
    expect(vllm.requests).toHaveLength(0);
  });
});

describe('options', () => {
  it('rejects options it cannot use, with a stable code', () => {
    expect(() => new EnvoySim({ extProcTarget: '' })).toThrow(EnvoySimError);
    for (const bad of [{ chunkSize: 0 }, { messageTimeoutMs: -1 }, { defaultUpstream: 'nope' }, { port: 70_000 }]) {
      try {
        new EnvoySim({ extProcTarget: '127.0.0.1:1', ...bad });
        expect.unreachable();
      } catch (err) {
        expect((err as EnvoySimError).code).toBe('INVALID_OPTIONS');
      }
    }
  });
});
