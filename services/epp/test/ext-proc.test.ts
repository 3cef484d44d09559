import { Client, credentials, Metadata, status, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { loadPackageDefinition } from '@grpc/grpc-js';
import { loadExtProc, type ProcessingRequest, type ProcessingResponse__Output } from '@kvix/proto';
import { freePorts, waitFor } from '@kvix/test-support';
import { resolveSimConfig, SimPod } from '@kvix/vllm-sim';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Epp, EppConfigSchema } from '../src/index.js';

const MODEL = 'Qwen/Qwen3-0.6B';
const silent = pino({ level: 'silent' });
let pods: { pod: SimPod; id: string }[] = [];
let epp: Epp;
let target: string;

beforeAll(async () => {
  for (let i = 0; i < 2; i++) {
    const [port, eventPort] = await freePorts(2);
    const pod = await SimPod.start(resolveSimConfig({ port, logLevel: 'silent', timeScale: 50, kvEventsConfig: { enable_kv_cache_events: true, endpoint: `tcp://*:${eventPort}` } }, {}), silent);
    pods.push({ pod, id: `127.0.0.1:${port}` });
  }
  const file = join(mkdtempSync(join(tmpdir(), 'kvix-epp-')), 'endpoints.yaml');
  writeFileSync(file, stringify({ endpoints: pods.map((p, i) => ({ name: `sim-${i}`, address: '127.0.0.1', port: Number(p.id.split(':')[1]), model: MODEL })) }));
  const config = EppConfigSchema.parse({
    logLevel: 'silent',
    gateway: { enabled: false },
    extProc: { host: '127.0.0.1', port: 0 },
    metrics: { host: '127.0.0.1', port: 0 },
    ingest: { endpointsFile: file, readinessTimeoutMs: 3000 },
    tokenization: { workers: 0 },
    scheduler: {
      plugins: [{ type: 'queue-scorer' }],
      schedulingProfiles: [{ name: 'default', plugins: [{ pluginRef: 'queue-scorer' }] }],
      fallbacks: 1,
      modelRewrites: [{ model: 'alias', targets: [{ model: MODEL, weight: 1 }] }],
    },
  });
  epp = await Epp.start(config, silent);
  target = `127.0.0.1:${epp.extProc!.port}`;
  await waitFor(async () => (await fetch(`http://127.0.0.1:${epp.metricsPort}/readyz`)).status === 200, 15_000, 'readiness');
});

afterAll(async () => {
  await epp?.stop();
  for (const p of pods) await p.pod.stop();
  pods = [];
});

const header = (key: string, value: string) => ({ key, rawValue: Buffer.from(value) });
const requestHeaders = (path: string, endOfStream: boolean, extra: [string, string][] = []): ProcessingRequest => ({
  requestHeaders: { headers: { headers: [header(':method', 'POST'), header(':path', path), header(':authority', 'gw'), header('content-type', 'application/json'), ...extra.map(([k, v]) => header(k, v))] }, endOfStream },
});

/** One ext_proc stream: send messages, collect answers until `until` says stop. */
async function exchange(messages: ProcessingRequest[], until: (answers: ProcessingResponse__Output[]) => boolean): Promise<ProcessingResponse__Output[]> {
  const Client = loadExtProc().envoy.service.ext_proc.v3.ExternalProcessor;
  const client = new Client(target, credentials.createInsecure());
  const call = client.Process() as ClientDuplexStream<ProcessingRequest, ProcessingResponse__Output>;
  const answers: ProcessingResponse__Output[] = [];
  const done = new Promise<void>((resolve, reject) => {
    call.on('data', (a: ProcessingResponse__Output) => {
      answers.push(a);
      if (until(answers)) resolve();
    });
    call.on('error', (err: ServiceError) => (err.code === status.CANCELLED ? resolve() : reject(err)));
    call.on('end', () => resolve());
  });
  for (const m of messages) call.write(m);
  await done;
  call.end();
  client.close();
  return answers;
}

const hasBodyEnd = (kind: 'requestBody' | 'responseBody') => (answers: ProcessingResponse__Output[]) => answers.some((a) => a[kind]?.response?.bodyMutation?.streamedResponse?.endOfStream);

describe('the ext_proc server (FULL_DUPLEX_STREAMED)', () => {
  it('defers the header answer until the body is whole, then names one endpoint in the header and it plus its fallback in envoy.lb metadata, and echoes the body in chunks of at most 62,000 bytes', async () => {
    const big = JSON.stringify({ model: MODEL, max_tokens: 1, messages: [{ role: 'user', content: 'x'.repeat(150_000) }] });
    const body = Buffer.from(big);
    const chunks: ProcessingRequest[] = [];
    for (let at = 0; at < body.length; at += 16_384) chunks.push({ requestBody: { body: body.subarray(at, at + 16_384), endOfStream: at + 16_384 >= body.length } });
    const answers = await exchange([requestHeaders('/v1/chat/completions', false), ...chunks], hasBodyEnd('requestBody'));
    expect(answers[0]!.response).toBe('requestHeaders');
    const common = answers[0]!.requestHeaders!.response!;
    expect(common.clearRouteCache).toBe(true);
    const destination = common.headerMutation!.setHeaders.find((h) => h.header?.key === 'x-gateway-destination-endpoint')!.header!.rawValue.toString();
    // One ip:port: Envoy's ORIGINAL_DST reads the header as one address and answers 503 to a list.
    expect(pods.map((p) => p.id)).toContain(destination);
    // The ordered list, the pick first, is what Envoy's override_host policy walks on retries.
    const list = answers[0]!.dynamicMetadata?.fields['envoy.lb']?.structValue?.fields['x-gateway-destination-endpoint']?.stringValue ?? '';
    expect(list.split(',')[0]).toBe(destination);
    expect(list.split(',').sort()).toEqual(pods.map((p) => p.id).sort());
    const echoed = answers.slice(1).map((a) => a.requestBody!.response!.bodyMutation!.streamedResponse!);
    expect(echoed.every((c) => c.body.length <= 62_000)).toBe(true);
    expect(echoed.filter((c) => c.endOfStream)).toHaveLength(1);
    expect(Buffer.concat(echoed.map((c) => c.body)).equals(body)).toBe(true);
  });

  it('rewrites an alias in the body, sets its new length, and maps the model back in the streamed response', async () => {
    const body = Buffer.from(JSON.stringify({ model: 'alias', stream: true, messages: [{ role: 'user', content: 'hi' }] }));
    const answers = await exchange([requestHeaders('/v1/chat/completions', false), { requestBody: { body, endOfStream: true } }], hasBodyEnd('requestBody'));
    const sets = answers[0]!.requestHeaders!.response!.headerMutation!.setHeaders;
    const rewritten = Buffer.concat(answers.slice(1).map((a) => a.requestBody!.response!.bodyMutation!.streamedResponse!.body));
    expect((JSON.parse(rewritten.toString()) as { model: string }).model).toBe(MODEL);
    expect(sets.find((h) => h.header?.key === 'content-length')!.header!.rawValue.toString()).toBe(String(rewritten.length));

    // The response side of another stream: an SSE chunk from the target model, split mid-event.
    const served = destinationOf(answers);
    const event = `data: ${JSON.stringify({ id: 'c', model: MODEL, choices: [{ delta: { content: 'hey' } }] })}\n\n`;
    const replies = await exchange(
      [
        requestHeaders('/v1/chat/completions', false),
        { requestBody: { body, endOfStream: true } },
        { responseHeaders: { headers: { headers: [header(':status', '200'), header('content-type', 'text/event-stream')] } }, metadataContext: { filterMetadata: { 'envoy.lb': { fields: { 'x-gateway-destination-endpoint-served': { stringValue: served } } } } } },
        { responseBody: { body: Buffer.from(event.slice(0, 20)) } },
        { responseBody: { body: Buffer.from(event.slice(20) + 'data: [DONE]\n\n'), endOfStream: true } },
      ],
      hasBodyEnd('responseBody'),
    );
    const headerAnswer = replies.find((a) => a.response === 'responseHeaders')!;
    expect(headerAnswer.responseHeaders!.response!.headerMutation!.removeHeaders).toContain('content-length');
    const out = Buffer.concat(replies.filter((a) => a.response === 'responseBody').map((a) => a.responseBody!.response!.bodyMutation!.streamedResponse!.body)).toString();
    expect(out).toContain('"model":"alias"');
    expect(out).not.toContain(MODEL);
    expect(out.trimEnd().endsWith('data: [DONE]')).toBe(true);
  });

  it('answers each response chunk in turn when the proxy sends response bodies STREAMED, so it keeps the chunk and can carry on without us', async () => {
    const body = Buffer.from(JSON.stringify({ model: 'alias', messages: [{ role: 'user', content: 'hi' }] }));
    const protocolConfig = { requestBodyMode: 'FULL_DUPLEX_STREAMED' as const, responseBodyMode: 'STREAMED' as const };
    const first = await exchange([{ ...requestHeaders('/v1/chat/completions', false), protocolConfig }, { requestBody: { body, endOfStream: true } }], hasBodyEnd('requestBody'));
    const served = destinationOf(first);
    const doc = JSON.stringify({ id: 'c', model: MODEL, choices: [{ message: { content: 'hey' } }], usage: { prompt_tokens: 3, completion_tokens: 1 } });
    const replies = await exchange(
      [
        { ...requestHeaders('/v1/chat/completions', false), protocolConfig },
        { requestBody: { body, endOfStream: true } },
        { responseHeaders: { headers: { headers: [header(':status', '200'), header('content-type', 'application/json')] } }, metadataContext: { filterMetadata: { 'envoy.lb': { fields: { 'x-gateway-destination-endpoint-served': { stringValue: served } } } } } },
        { responseBody: { body: Buffer.from(doc.slice(0, 10)) } },
        { responseBody: { body: Buffer.from(doc.slice(10)), endOfStream: true } },
      ],
      (a) => a.filter((x) => x.response === 'responseBody').length >= 2,
    );
    const headerAnswer = replies.find((a) => a.response === 'responseHeaders')!;
    expect(headerAnswer.responseHeaders!.response!.headerMutation!.setHeaders.find((h) => h.header?.key === 'x-kvix-endpoint')?.header?.rawValue.toString()).toBe(served);
    const bodies = replies.filter((a) => a.response === 'responseBody').map((a) => a.responseBody!.response!.bodyMutation!);
    // A JSON answer is rewritten whole: the first chunk is held back (cleared), the last carries it all.
    expect(bodies.map((b) => b.mutation)).toEqual(['clearBody', 'body']);
    expect(bodies.some((b) => b.streamedResponse)).toBe(false);
    expect(JSON.parse(bodies[1]!.body!.toString())).toMatchObject({ model: 'alias' });
  });

  it('counts Envoy\'s reset at the end of a complete exchange as a normal end, not as an error', async () => {
    const metrics = async () => await (await fetch(`http://127.0.0.1:${epp.metricsPort}/metrics`)).text();
    const count = (text: string, re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
    const before = await metrics();
    const body = Buffer.from(JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] }));
    const Client = loadExtProc().envoy.service.ext_proc.v3.ExternalProcessor;
    const client = new Client(target, credentials.createInsecure());
    const call = client.Process() as ClientDuplexStream<ProcessingRequest, ProcessingResponse__Output>;
    call.on('error', () => undefined);
    const answered = new Promise<void>((resolve) => call.on('data', (a: ProcessingResponse__Output) => a.response === 'responseBody' && resolve()));
    for (const m of [requestHeaders('/v1/chat/completions', false), { requestBody: { body, endOfStream: true } }, { responseHeaders: { headers: { headers: [header(':status', '200')] } } }, { responseBody: { body: Buffer.from('{}'), endOfStream: true } }] as ProcessingRequest[]) call.write(m);
    await answered;
    call.cancel(); // what Envoy does once the exchange is over
    client.close();
    const after = await waitFor(async () => {
      const text = await metrics();
      return count(text, /^kvix_epp_ext_proc_streams_total\{outcome="complete"\} (\d+)/m) > count(before, /^kvix_epp_ext_proc_streams_total\{outcome="complete"\} (\d+)/m) ? text : undefined;
    }, 5000, 'the stream counted');
    expect(count(after, /^kvix_epp_ext_proc_streams_total\{outcome="incomplete"\} (\d+)/m)).toBe(count(before, /^kvix_epp_ext_proc_streams_total\{outcome="incomplete"\} (\d+)/m));
    expect(after).not.toMatch(/^llm_d_epp_request_error_total\{[^}]*error_code="CANCELLED"/m);
  });

  it('answers a malformed body with an immediate 400 and routes a request without a body on load alone', async () => {
    const bad = await exchange([requestHeaders('/v1/completions', false), { requestBody: { body: Buffer.from('{"model":'), endOfStream: true } }], (a) => a.some((x) => x.response === 'immediateResponse'));
    const immediate = bad.find((a) => a.response === 'immediateResponse')!.immediateResponse!;
    expect(immediate.status?.code).toBe('BadRequest');
    expect(JSON.parse(immediate.body.toString())).toMatchObject({ error: { code: 'INVALID_JSON' } });
    const bodiless = await exchange([requestHeaders('/v1/models', true)], (a) => a.length >= 1);
    expect(bodiless[0]!.requestHeaders!.response!.headerMutation!.setHeaders[0]!.header!.key).toBe('x-gateway-destination-endpoint');
  });

  it('rejects bytes that are not a ProcessingRequest with INVALID_ARGUMENT and reports health', async () => {
    const raw = new Client(target, credentials.createInsecure());
    const call = raw.makeBidiStreamRequest('/envoy.service.ext_proc.v3.ExternalProcessor/Process', (b: Buffer) => b, (b: Buffer) => b, new Metadata());
    const code = await new Promise<number>((resolve) => {
      call.on('error', (err: ServiceError) => resolve(err.code));
      call.on('data', () => undefined);
      call.write(Buffer.from([0x12, 0xff, 0x01]));
    });
    raw.close();
    expect(status[code]).toBe('INVALID_ARGUMENT');
    const def = loadPackageDefinition(loadSync(healthProtoPath, { enums: String })) as unknown as { grpc: { health: { v1: { Health: new (t: string, c: ReturnType<typeof credentials.createInsecure>) => Client & { check(r: { service: string }, cb: (e: ServiceError | null, r?: { status: string }) => void): void } } } } };
    const health = new def.grpc.health.v1.Health(target, credentials.createInsecure());
    for (const service of ['liveness', 'readiness', 'envoy.service.ext_proc.v3.ExternalProcessor']) {
      const answer = await new Promise<string>((resolve, reject) => health.check({ service }, (e, r) => (e ? reject(e) : resolve(r!.status))));
      expect({ service, answer }).toEqual({ service, answer: 'SERVING' });
    }
    health.close();
  });
});

function destinationOf(answers: ProcessingResponse__Output[]): string {
  return answers[0]!.requestHeaders!.response!.headerMutation!.setHeaders.find((h) => h.header?.key === 'x-gateway-destination-endpoint')!.header!.rawValue.toString().split(',')[0]!;
}
