import { Agent, request as httpRequest } from 'node:http';
import { parentPort, workerData } from 'node:worker_threads';
import { TraceWorkload, type TraceWorkloadSpec } from './trace-workload.js';
import { Workload, type RequestSource, type WorkloadSpec } from './workload.js';

/**
 * The load generator of the routing benchmark, on its own thread: arrival times and first-token
 * timestamps are taken on an event loop the router (main thread) does not share.
 */
export type AnyWorkloadSpec = WorkloadSpec | TraceWorkloadSpec;

export function requestSource(spec: AnyWorkloadSpec): RequestSource {
  return spec.kind === 'trace' ? new TraceWorkload(spec) : new Workload(spec);
}

export interface LoadgenData {
  workload: AnyWorkloadSpec;
  /** Give up on a request after this long (counted as an error). */
  requestTimeoutMs: number;
}

export type ToLoadgen =
  /** Start the sequence again, from `seed` when given (a repeat of the benchmark), else the spec's. */
  | { type: 'reset'; seed?: number }
  /** `target`: a base URL, or several comma-separated (requests go round robin, like a Service over router replicas). */
  | { type: 'step'; target: string; ratePerSec: number; seconds: number; idPrefix: string; headers?: Record<string, string> }
  | { type: 'stop' };

export interface RequestRecord {
  id: string;
  group: number;
  conversation: number;
  turn: number;
  /** Scheduled send time, ms after the step started. */
  sentMs: number;
  /** Send → first non-empty content chunk, ms (null when none arrived). */
  ttftMs: number | null;
  /** Send → end of the stream, ms. */
  e2eMs: number;
  status: number;
  error: string | null;
  promptTokens: number;
  cachedTokens: number;
  outputTokens: number;
  /** The pod that served it (the gateway's x-kvix-endpoint). */
  endpoint: string | null;
}

export type FromLoadgen =
  | { type: 'ready' }
  | { type: 'step-done'; records: RequestRecord[]; sendSeconds: number; totalSeconds: number; lateSendsMs: number };

const data = workerData as LoadgenData;
const agent = new Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });
let workload = requestSource(data.workload);

interface Planned {
  atMs: number;
  id: string;
  body: string;
  group: number;
  conversation: number;
  turn: number;
}

function plan(ratePerSec: number, seconds: number, idPrefix: string): Planned[] {
  return workload.arrivals(ratePerSec, seconds).map(({ atMs, request: r }, i) => ({
    atMs,
    id: `${idPrefix}-${i}`,
    body: JSON.stringify({ model: data.workload.model, messages: r.messages, max_tokens: r.maxTokens, stream: true, stream_options: { include_usage: true } }),
    group: r.group,
    conversation: r.conversation,
    turn: r.turn,
  }));
}

function send(target: URL, p: Planned, stepStart: number, extraHeaders: Record<string, string> = {}): Promise<RequestRecord> {
  const sent = performance.now();
  const record: RequestRecord = {
    id: p.id,
    group: p.group,
    conversation: p.conversation,
    turn: p.turn,
    sentMs: sent - stepStart,
    ttftMs: null,
    e2eMs: 0,
    status: 0,
    error: null,
    promptTokens: 0,
    cachedTokens: 0,
    outputTokens: 0,
    endpoint: null,
  };
  return new Promise((resolve) => {
    let settled = false;
    const done = (error: string | null): void => {
      if (settled) return;
      settled = true;
      record.e2eMs = performance.now() - sent;
      if (error !== null) record.error = error;
      resolve(record);
    };
    const req = httpRequest(
      {
        host: target.hostname,
        port: target.port,
        path: '/v1/chat/completions',
        method: 'POST',
        agent,
        headers: { ...extraHeaders, 'content-type': 'application/json', 'content-length': Buffer.byteLength(p.body), 'x-request-id': p.id },
      },
      (res) => {
        record.status = res.statusCode ?? 0;
        const endpoint = res.headers['x-kvix-endpoint'];
        record.endpoint = typeof endpoint === 'string' ? endpoint : null;
        res.setEncoding('utf8');
        let pending = '';
        let sawDone = false;
        res.on('data', (chunk: string) => {
          pending += chunk;
          let cut: number;
          while ((cut = pending.indexOf('\n\n')) >= 0) {
            const event = pending.slice(0, cut);
            pending = pending.slice(cut + 2);
            for (const line of event.split('\n')) {
              if (!line.startsWith('data: ')) continue;
              const payload = line.slice(6);
              if (payload === '[DONE]') {
                sawDone = true;
                continue;
              }
              if (record.status !== 200) continue;
              const msg = JSON.parse(payload) as { choices?: { delta?: { content?: string } }[]; usage?: { prompt_tokens: number; completion_tokens: number; prompt_tokens_details?: { cached_tokens?: number } } };
              // The first chunk carries only the role; TTFT is the first chunk with generated text.
              if (record.ttftMs === null && (msg.choices?.[0]?.delta?.content ?? '') !== '') record.ttftMs = performance.now() - sent;
              if (msg.usage) {
                record.promptTokens = msg.usage.prompt_tokens;
                record.outputTokens = msg.usage.completion_tokens;
                record.cachedTokens = msg.usage.prompt_tokens_details?.cached_tokens ?? 0;
              }
            }
          }
        });
        res.on('end', () => done(record.status !== 200 ? `HTTP ${record.status}: ${pending.slice(0, 200)}` : sawDone ? null : 'stream ended without [DONE]'));
        res.on('error', (err) => done(err.message));
        res.on('aborted', () => done('response aborted'));
      },
    );
    req.setTimeout(data.requestTimeoutMs, () => req.destroy(new Error(`no answer within ${data.requestTimeoutMs} ms`)));
    req.on('error', (err) => done(err.message));
    req.end(p.body);
  });
}

async function step(msg: Extract<ToLoadgen, { type: 'step' }>): Promise<FromLoadgen> {
  // Bodies are built before the clock starts, so JSON work never delays an arrival.
  const planned = plan(msg.ratePerSec, msg.seconds, msg.idPrefix);
  const targets = msg.target.split(',').map((t) => new URL(t));
  const t0 = performance.now();
  const inFlight: Promise<RequestRecord>[] = [];
  let late = 0;
  for (const p of planned) {
    const wait = t0 + p.atMs - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    late = Math.max(late, performance.now() - (t0 + p.atMs));
    inFlight.push(send(targets[inFlight.length % targets.length]!, p, t0, msg.headers));
  }
  const sendSeconds = (performance.now() - t0) / 1000;
  const records = await Promise.all(inFlight);
  return { type: 'step-done', records, sendSeconds, totalSeconds: (performance.now() - t0) / 1000, lateSendsMs: late };
}

parentPort!.on('message', (msg: ToLoadgen) => {
  if (msg.type === 'stop') {
    agent.destroy();
    parentPort!.close();
    return;
  }
  if (msg.type === 'reset') {
    workload = requestSource(msg.seed === undefined ? data.workload : { ...data.workload, seed: msg.seed });
    parentPort!.postMessage({ type: 'ready' } satisfies FromLoadgen);
    return;
  }
  void step(msg).then((r) => parentPort!.postMessage(r));
});
parentPort!.postMessage({ type: 'ready' } satisfies FromLoadgen);
