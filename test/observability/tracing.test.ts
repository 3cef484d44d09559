import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { EnvoyProcess } from '@kvix/envoy';
import { ceiling, freePorts, nodeCli, repoRoot, waitFor, type ManagedProcess } from '@kvix/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chat, endpointsFile, send, startRealEnvoy, startSim, startStack, type Sim } from '../support/stack.js';
import { OtlpReceiver, type ReceivedSpan } from './otlp-receiver.js';

const SERVER = 2;
const CLIENT = 3;

let receiver: OtlpReceiver;
const sims: Sim[] = [];
let epp: ManagedProcess;
let envoy: EnvoyProcess;
let gateway: string;
const epps = nodeCli(join(repoRoot(), 'services/epp/bin/kvix-epp.js'));

/** A client's W3C traceparent: a new trace, its span the parent of whatever serves the request. */
function clientContext(): { traceId: string; spanId: string; traceparent: string } {
  const traceId = randomBytes(16).toString('hex');
  const spanId = randomBytes(8).toString('hex');
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}

/** The trace's spans once `done` holds of them (the SDKs export in batches). */
function spansOf(traceId: string, done: (spans: ReceivedSpan[]) => boolean, what: string): Promise<ReceivedSpan[]> {
  return waitFor(() => {
    const spans = receiver.trace(traceId);
    return done(spans) ? spans : undefined;
  }, 30_000, `${what} (have: ${receiver.trace(traceId).map((s) => `${s.service}/${s.name}`).join(', ')})`);
}

function one(spans: ReceivedSpan[], name: string): ReceivedSpan {
  const found = spans.filter((s) => s.name === name);
  expect(found, `one ${name} span`).toHaveLength(1);
  return found[0]!;
}

/** True when `ancestor` is `span`'s parent, grandparent, … */
function under(spans: ReceivedSpan[], span: ReceivedSpan, ancestor: ReceivedSpan): boolean {
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  for (let s: ReceivedSpan | undefined = span; s; s = byId.get(s.parentSpanId)) if (s.parentSpanId === ancestor.spanId) return true;
  return false;
}

beforeAll(async () => {
  receiver = await OtlpReceiver.start();
  // The pods trace too (vLLM's --otlp-traces-endpoint): their request spans must continue kvix's.
  for (let i = 0; i < 3; i++) sims.push(await startSim({ otlpTracesEndpoint: receiver.url }));
  const dir = mkdtempSync(join(tmpdir(), 'kvix-tracing-'));
  const config = join(dir, 'epp.yaml');
  // Every KV-event batch traced (the default samples 1 %).
  writeFileSync(config, 'index:\n  traceBatchRatio: 1\n');
  const [gatewayPort, extProcPort, metricsPort] = await freePorts(3);
  epp = epps.run(
    ['--config', config, '--endpoints-file', endpointsFile(sims), '--gateway-host', '127.0.0.1', '--gateway-port', String(gatewayPort), '--ext-proc-host', '127.0.0.1', '--ext-proc-port', String(extProcPort), '--metrics-host', '127.0.0.1', '--metrics-port', String(metricsPort), '--tokenizer-workers', '1', '--log-level', 'warn'],
    // Only the standard variables: the endpoint turns tracing on.
    { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '100', OTEL_SERVICE_NAME: 'kvix-epp' },
  );
  await waitFor(async () => (await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).status === 200, 60_000, `the EPP ready (${epp.output().slice(-400)})`);
  gateway = `http://127.0.0.1:${gatewayPort}`;
  // A real Envoy running deploy/envoy/envoy.yaml: the traceparent must survive Envoy itself.
  envoy = await startRealEnvoy([`127.0.0.1:${extProcPort}`], sims.map((s) => s.id));
}, ceiling(120_000));

afterAll(async () => {
  await envoy?.stop();
  await epp?.stop('SIGTERM', 10_000);
  for (const s of sims) await s.pod.stop();
  await receiver?.close();
});

describe('OpenTelemetry traces, received by a real OTLP/HTTP receiver', () => {
  it('a gateway request: one span continuing the client traceparent, with parse, schedule, each plugin, template, tokenize, hash, index lookup and pick beneath it, and the upstream call the pod continues', async () => {
    const client = clientContext();
    const answer = await send(gateway, '/v1/chat/completions', chat('Which carrier takes parcels to Norway?'), { traceparent: client.traceparent });
    expect(answer.status).toBe(200);
    const spans = await spansOf(client.traceId, (s) => s.some((x) => x.name === 'kvix.gateway.request') && s.some((x) => x.name === 'llm_request'), 'the gateway request and the pod');
    const request = one(spans, 'kvix.gateway.request');
    expect(request.service).toBe('kvix-epp');
    expect(request.kind).toBe(SERVER);
    expect(request.parentSpanId).toBe(client.spanId);
    expect(request.attributes['kvix.endpoint']).toBe(answer.endpoint);
    expect(request.attributes['http.response.status_code']).toBe(200);

    const parse = one(spans, 'kvix.parse');
    const schedule = one(spans, 'kvix.schedule');
    expect(parse.parentSpanId).toBe(request.spanId);
    expect(schedule.parentSpanId).toBe(request.spanId);
    // Every plugin of the default profile, as a child of the scheduling cycle.
    const plugins = spans.filter((s) => s.name === 'kvix.plugin' && s.parentSpanId === schedule.spanId).map((s) => s.attributes['kvix.plugin.type']);
    expect(plugins).toEqual(expect.arrayContaining(['precise-prefix-cache-scorer', 'queue-scorer', 'kv-cache-utilization-scorer', 'no-hit-lru-scorer']));
    const pick = one(spans, 'kvix.pick');
    expect(pick.parentSpanId).toBe(schedule.spanId);
    expect(pick.attributes['kvix.endpoints']).toEqual(expect.arrayContaining([answer.endpoint]));

    const score = one(spans, 'kvix.prefix.score');
    const precise = spans.find((s) => s.name === 'kvix.plugin' && s.attributes['kvix.plugin.type'] === 'precise-prefix-cache-scorer')!;
    expect(under(spans, score, precise)).toBe(true);
    const tokenization = one(spans, 'kvix.tokenization');
    expect(tokenization.parentSpanId).toBe(score.spanId);
    for (const step of ['kvix.template', 'kvix.tokenize']) expect(one(spans, step).parentSpanId, step).toBe(tokenization.spanId);
    expect(one(spans, 'kvix.hash').parentSpanId).toBe(score.spanId);
    expect(spans.some((s) => s.name === 'kvix.index.lookup' && s.parentSpanId === score.spanId)).toBe(true);

    const upstream = one(spans, 'kvix.upstream');
    expect(upstream.kind).toBe(CLIENT);
    expect(upstream.parentSpanId).toBe(request.spanId);
    expect(upstream.attributes['server.address']).toBe(answer.endpoint);
    const pod = one(spans, 'llm_request');
    expect(pod.service).toBe('vllm-sim');
    expect(pod.parentSpanId).toBe(upstream.spanId);
    // The routing decision's speculative entries, written by the pre-request hooks.
    expect(spans.some((s) => s.name === 'kvix.index.add' && under(spans, s, one(spans, 'kvix.pre_request')))).toBe(true);
  });

  it("a request through Envoy's ext_proc protocol: the same tree, and the traceparent for the pod travels in the header mutation", async () => {
    const client = clientContext();
    const answer = await send(envoy.url(), '/v1/chat/completions', chat('Do you ship to Iceland?'), { traceparent: client.traceparent });
    expect(answer.status).toBe(200);
    const spans = await spansOf(client.traceId, (s) => s.some((x) => x.name === 'kvix.ext_proc.request' && x.endNs > 0n) && s.some((x) => x.name === 'llm_request'), 'the ext_proc request and the pod');
    const request = one(spans, 'kvix.ext_proc.request');
    expect(request.parentSpanId).toBe(client.spanId);
    for (const name of ['kvix.parse', 'kvix.schedule', 'kvix.pick', 'kvix.prefix.score', 'kvix.tokenization', 'kvix.hash']) expect(under(spans, one(spans, name), request), name).toBe(true);
    const upstream = one(spans, 'kvix.upstream');
    expect(upstream.parentSpanId).toBe(request.spanId);
    expect(one(spans, 'llm_request').parentSpanId).toBe(upstream.spanId);
  });

  it('KV-event ingestion: a span per (sampled) batch with the index writes it made', async () => {
    const batches = await waitFor(() => {
      const b = receiver.spans.filter((s) => s.name === 'kvix.ingest.batch' && s.service === 'kvix-epp');
      return b.some((x) => receiver.trace(x.traceId).some((c) => c.name === 'kvix.index.add' && c.parentSpanId === x.spanId)) ? b : undefined;
    }, 30_000, 'an ingestion batch span with index adds');
    const batch = batches.find((b) => receiver.trace(b.traceId).some((c) => c.parentSpanId === b.spanId))!;
    expect(batch.parentSpanId).toBe('');
    expect(sims.map((s) => s.id)).toContain(batch.attributes['kvix.pod']);
    expect(batch.attributes['kvix.events']).toBeGreaterThan(0);
  });
});

describe('with no OTEL_* configuration', () => {
  it('records nothing, and the client traceparent reaches the pod untouched', async () => {
    const stack = await startStack('gateway', sims);
    try {
      const client = clientContext();
      expect((await send(stack.base, '/v1/chat/completions', chat('Any news on parcel 7?'), { traceparent: client.traceparent })).status).toBe(200);
      const spans = await spansOf(client.traceId, (s) => s.some((x) => x.name === 'llm_request'), 'the pod span');
      expect(spans.map((s) => s.name)).toEqual(['llm_request']);
      expect(spans[0]!.parentSpanId).toBe(client.spanId);
    } finally {
      await stack.stop();
    }
  });
});
