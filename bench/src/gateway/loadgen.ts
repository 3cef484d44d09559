import { Agent, request } from 'node:http';
import { parentPort } from 'node:worker_threads';

/**
 * The gateway benchmark's load generator, on its own thread so that send times and latencies are
 * taken on an event loop nothing else shares: open loop (a request every 1/rate s whatever the
 * answers do), one fixed small completion, keep-alive connections.
 */
export type ToLoadgen = { type: 'step'; target: string; ratePerSec: number; seconds: number; body: string; path: string } | { type: 'stop' };

export interface StepResult {
  type: 'step-done';
  /** Send → whole answer, ms, of each request answered 200. */
  latenciesMs: number[];
  sent: number;
  errors: number;
  firstError: string | null;
  /** The achieved send rate (a busy machine can fall behind the schedule). */
  sendRate: number;
  /** Worst lateness of a send against its schedule, ms. */
  lateSendsMs: number;
}

const agent = new Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });

function once(target: URL, path: string, body: string): Promise<{ ms: number; error: string | null }> {
  const sent = performance.now();
  return new Promise((resolve) => {
    const req = request({ host: target.hostname, port: target.port, path, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ ms: performance.now() - sent, error: res.statusCode === 200 ? null : `HTTP ${res.statusCode}: ${text.slice(0, 160)}` }));
      res.on('error', (err) => resolve({ ms: 0, error: err.message }));
    });
    req.setTimeout(30_000, () => req.destroy(new Error('no answer within 30 s')));
    req.on('error', (err) => resolve({ ms: 0, error: err.message }));
    req.end(body);
  });
}

async function step(msg: Extract<ToLoadgen, { type: 'step' }>): Promise<StepResult> {
  const target = new URL(msg.target);
  const gap = 1000 / msg.ratePerSec;
  const count = Math.round(msg.ratePerSec * msg.seconds);
  const pending: Promise<{ ms: number; error: string | null }>[] = [];
  let late = 0;
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const at = t0 + i * gap;
    const wait = at - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    late = Math.max(late, performance.now() - at);
    pending.push(once(target, msg.path, msg.body));
  }
  const sendSeconds = (performance.now() - t0) / 1000;
  const results = await Promise.all(pending);
  const failed = results.filter((r) => r.error !== null);
  return {
    type: 'step-done',
    latenciesMs: results.filter((r) => r.error === null).map((r) => r.ms),
    sent: count,
    errors: failed.length,
    firstError: failed[0]?.error ?? null,
    sendRate: count / Math.max(sendSeconds, 1e-9),
    lateSendsMs: late,
  };
}

parentPort!.on('message', (msg: ToLoadgen) => {
  if (msg.type === 'stop') {
    agent.destroy();
    parentPort!.close();
    return;
  }
  void step(msg).then((r) => parentPort!.postMessage(r));
});
