import { request, type IncomingMessage } from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_PICKER_CONFIG } from '@kvix/scheduler';
import { ceiling, freePorts, nodeCli, startNats, startRedis, waitFor, type ManagedProcess } from '@kvix/test-support';
import { resolveSimConfig, SimPod } from '@kvix/vllm-sim';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const BIN = fileURLToPath(new URL('../bin/kvix-epp.js', import.meta.url));
const MODEL = 'Qwen/Qwen3-0.6B';
const silent = pino({ level: 'silent' });
const cli = nodeCli(BIN);

interface WorkerView {
  worker: number;
  pid: number;
  started: boolean;
  answered: boolean;
  ready: boolean;
  appliedSeq: number;
  pods: { pod: string; entries: number; speculative: number }[];
  inFlight: { own: Record<string, number>; peers: Record<string, number> };
  tokensInFlight: { own: Record<string, { prefill: number; decode: number }>; peers: Record<string, { prefill: number; decode: number }> };
}

let pods: { pod: SimPod; id: string; eventPort: number }[] = [];
let epp: ManagedProcess;
let gatewayPort: number;
let metricsPort: number;
/** The worker named by every answer the gateway of `epp` gave: each is one routing decision that worker counted. */
const answeredBy: string[] = [];
let endpointsFile: string;

/** The worker an answer names; an answer of `epp`'s gateway is recorded in `answeredBy`. */
function counted(port: number, res: IncomingMessage): string | undefined {
  const worker = res.headers['x-kvix-worker'] as string | undefined;
  if (port === gatewayPort && res.statusCode === 200 && worker !== undefined) answeredBy.push(worker);
  return worker;
}

/** One request on a connection of its own: node:cluster hands each new connection to a worker. */
function complete(port: number, prompt: string, maxTokens = 1): Promise<{ status: number; worker: string | undefined; endpoint: string | undefined }> {
  const body = JSON.stringify({ model: MODEL, prompt, max_tokens: maxTokens, ignore_eos: true });
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/v1/completions', method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, worker: counted(port, res), endpoint: res.headers['x-kvix-endpoint'] as string | undefined }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A streamed request on a connection of its own (what the predicted-latency producer learns TTFT and TPOT from). */
function streamed(port: number, prompt: string): Promise<{ status: number; worker: string | undefined }> {
  const body = JSON.stringify({ model: MODEL, prompt, max_tokens: 8, ignore_eos: true, stream: true, stream_options: { include_usage: true } });
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/v1/completions', method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, worker: counted(port, res) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function workers(): Promise<{ indexSeq: number; restarts: number; workers: WorkerView[] }> {
  return (await (await fetch(`http://127.0.0.1:${metricsPort}/debug/workers`)).json()) as { indexSeq: number; restarts: number; workers: WorkerView[] };
}

interface AnalyticsDocument {
  scoring: { requests: number };
  routing: { decisions: number; by_pod: Record<string, { requests: number; blocks: number }> };
  top_prefixes: { requests: number; pods: string[] }[];
  events: Record<string, unknown>;
  index: { by_pod: Record<string, { entries: number; speculative: number }> };
  workers: { included: string[]; missing: string[] };
}

async function analytics(): Promise<AnalyticsDocument> {
  const res = await fetch(`http://127.0.0.1:${metricsPort}/v1/analytics`);
  expect(res.status).toBe(200);
  return (await res.json()) as AnalyticsDocument;
}

const ready = async (): Promise<boolean> => (await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).status === 200;

/** Requests over fresh connections until both workers answered one (round robin hands them out alternately). */
async function routedByBoth(prompt: (i: number) => string): Promise<{ worker: string | undefined; endpoint: string | undefined }[]> {
  const seen: { worker: string | undefined; endpoint: string | undefined }[] = [];
  await waitFor(
    async () => {
      const r = await complete(gatewayPort, prompt(seen.length));
      expect(r.status).toBe(200);
      seen.push(r);
      return seen.length >= 4 && new Set(seen.map((s) => s.worker)).size === 2;
    },
    20_000,
    () => `requests answered by two workers (so far: ${JSON.stringify(seen.map((s) => s.worker))})`,
  );
  return seen;
}

function writeEndpoints(list: typeof pods): void {
  writeFileSync(endpointsFile, stringify({ endpoints: list.map((p) => ({ name: `sim-${pods.indexOf(p)}`, address: '127.0.0.1', port: Number(p.id.split(':')[1]), eventPort: p.eventPort, model: MODEL })) }));
}

beforeAll(async () => {
  for (let i = 0; i < 2; i++) {
    const [port, eventPort] = await freePorts(2);
    const pod = await SimPod.start(resolveSimConfig({ port, logLevel: 'silent', timeScale: 5, kvEventsConfig: { enable_kv_cache_events: true, endpoint: `tcp://*:${eventPort}` } }, {}), silent);
    pods.push({ pod, id: `127.0.0.1:${port}`, eventPort: eventPort! });
  }
  const dir = mkdtempSync(join(tmpdir(), 'kvix-epp-workers-'));
  endpointsFile = join(dir, 'endpoints.yaml');
  writeEndpoints(pods);
  // The /ui history sampled often, so a test sees the merged counts in it soon.
  writeFileSync(join(dir, 'config.yaml'), stringify({ analytics: { historyIntervalMs: 200 } }));
  // The default profile, its pods' /metrics read once when each pod is added and then every 10 minutes:
  // each read during the test is one process scraping.
  const schedulerFile = join(dir, 'scheduler.yaml');
  writeFileSync(schedulerFile, stringify({ ...DEFAULT_PICKER_CONFIG, plugins: DEFAULT_PICKER_CONFIG.plugins.map((p) => (p.type === 'metrics-data-source' ? { ...p, parameters: { intervalMs: 600_000 } } : p)) }));
  let extProcPort: number;
  [gatewayPort, extProcPort, metricsPort] = (await freePorts(3)) as [number, number, number];
  // The built-in latency predictor: the predicted-latency producer keeps tokens in flight per pod, which the workers share.
  epp = cli.run(['--routing-workers', '2', '--config', join(dir, 'config.yaml'), '--endpoints-file', endpointsFile, '--gateway-port', String(gatewayPort), '--ext-proc-port', String(extProcPort), '--metrics-port', String(metricsPort), '--tokenizer-workers', '0', '--latency-predictor', 'builtin', '--scheduler-config', schedulerFile]);
  await waitFor(() => epp.output().includes('"epp started"') || epp.child.exitCode !== null, 60_000, 'the primary and its workers to start');
  expect(epp.child.exitCode, epp.output()).toBeNull();
  await waitFor(ready, 30_000, () => `readiness (every worker ready)\n${epp.output()}`);
});

afterAll(async () => {
  await cli.stopAll();
  for (const p of pods) await p.pod.stop();
  pods = [];
});

describe('kvix-epp --routing-workers 2', () => {
  it('routes requests from several connections on one gateway port with both workers, and sums their metrics on the metrics port', async () => {
    const seen = await routedByBoth((i) => `hello number ${i}`);
    expect(seen.every((s) => s.endpoint !== undefined && pods.some((p) => p.id === s.endpoint))).toBe(true);
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const routed = text
      .split('\n')
      .filter((l) => l.startsWith('llm_d_epp_request_total{'))
      .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
    // Both workers' counters, summed: every request routed so far, whichever worker took it.
    expect(routed).toBeGreaterThanOrEqual(seen.length);
    expect(text).toMatch(/^kvix_epp_workers 2$/m);
    // What every worker sees alike is not summed: two ready pods (not 2 × 2), one build.
    expect(text).toMatch(/^llm_d_epp_ready_endpoints\{name="[^"]*"\} 2$/m);
    expect(text).toMatch(/^llm_d_epp_info\{[^}]*\} 1$/m);
  });

  it('sees a KV event ingested once by the primary in both workers, so prefix affinity holds whichever worker answers', async () => {
    // The prompt reaches pod 1 directly, never through the EPP: only its KV events can tell where it is.
    const holder = pods[1]!;
    const prompt = `You are a careful assistant. ${'The quick brown fox jumps over the lazy dog. '.repeat(60)}`;
    const direct = await complete(Number(holder.id.split(':')[1]), prompt);
    expect(direct.status).toBe(200);
    let view = await workers();
    await waitFor(
      async () => {
        view = await workers();
        return view.workers.length === 2 && view.workers.every((w) => (w.pods.find((p) => p.pod === holder.id)?.entries ?? 0) > 0);
      },
      20_000,
      () => `both workers to hold pod 1's blocks: ${JSON.stringify(view)}`,
    );
    const seen = await routedByBoth(() => prompt);
    expect(seen.map((s) => s.endpoint)).toEqual(seen.map(() => holder.id));
    // Those lookups happened in the workers: the metrics port shows theirs, not the primary's idle copy.
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(Number(/^kvcache_index_lookup_requests_total (\d+)/m.exec(text)?.[1] ?? 0)).toBeGreaterThanOrEqual(seen.length);
  });

  it("reads each pod's /metrics once for both workers: the primary scrapes and relays the load it read", async () => {
    type Seen = { worker: string | null; metrics: Record<string, unknown> };
    let answers: Seen[] = [];
    await waitFor(
      async () => {
        answers = [];
        for (let i = 0; i < 2; i++) {
          const res = await fetch(`http://127.0.0.1:${metricsPort}/debug/endpoints`);
          const body = (await res.json()) as { endpoints: { id: string; metrics: unknown }[] };
          answers.push({ worker: res.headers.get('x-kvix-worker'), metrics: Object.fromEntries(body.endpoints.map((e) => [e.id, e.metrics])) });
        }
        return new Set(answers.map((a) => a.worker)).size === 2 && answers.every((a) => pods.every((p) => a.metrics[p.id] !== null && a.metrics[p.id] !== undefined));
      },
      20_000,
      () => `both workers to hold every pod's load: ${JSON.stringify(answers)}`,
    );
    // The same scrape in both: the primary's, relayed.
    for (const p of pods) expect(answers[0]!.metrics[p.id]).toEqual(answers[1]!.metrics[p.id]);
    for (const p of pods) {
      const state = (await (await fetch(`http://${p.id}/sim/state`)).json()) as { metricsReads: number };
      expect(state.metricsReads, p.id).toBe(1);
    }
  });

  it("shares each worker's requests in flight with the other, so load scorers count every request the pods are being sent", async () => {
    const total = (counts: Record<string, number>): number => Object.values(counts).reduce((a, b) => a + b, 0);
    const same = (a: Record<string, unknown>, b: Record<string, unknown>): boolean => JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());
    const tokens = (t: Record<string, { prefill: number; decode: number }>): number => Object.values(t).reduce((a, b) => a + b.prefill + b.decode, 0);
    // Long answers (1,000 tokens at the pods' 5× clock: about 2 s), each on a connection of its own.
    const long = Array.from({ length: 4 }, (_, i) => complete(gatewayPort, `count me ${i}`, 1000));
    let view = await workers();
    await waitFor(
      async () => {
        view = await workers();
        const [a, b] = view.workers;
        if (a === undefined || b === undefined || total(a.inFlight.own) === 0 || total(b.inFlight.own) === 0) return false;
        // The latency predictor's view too: every token the EPP has sent a pod, not the one worker's share.
        return same(a.inFlight.peers, b.inFlight.own) && same(b.inFlight.peers, a.inFlight.own) && tokens(a.tokensInFlight.own) > 0 && same(a.tokensInFlight.peers, b.tokensInFlight.own) && same(b.tokensInFlight.peers, a.tokensInFlight.own);
      },
      30_000,
      () => `each worker to see the other's requests and tokens in flight: ${JSON.stringify(view.workers.map((w) => ({ requests: w.inFlight, tokens: w.tokensInFlight })))}`,
    );
    expect((await Promise.all(long)).map((r) => r.status)).toEqual([200, 200, 200, 200]);
    await waitFor(
      async () => {
        view = await workers();
        return view.workers.every((w) => total(w.inFlight.own) === 0 && total(w.inFlight.peers) === 0 && tokens(w.tokensInFlight.own) === 0 && tokens(w.tokensInFlight.peers) === 0);
      },
      20_000,
      () => `nothing in flight anywhere once every answer ended: ${JSON.stringify(view.workers.map((w) => w.inFlight))}`,
    );
  });

  it('watches the endpoints file once, in the primary, and both workers follow its changes', async () => {
    const endpointsOf = async (): Promise<{ worker: string | null; ids: string[] }> => {
      const res = await fetch(`http://127.0.0.1:${metricsPort}/debug/endpoints`);
      return { worker: res.headers.get('x-kvix-worker'), ids: ((await res.json()) as { endpoints: { id: string }[] }).endpoints.map((e) => e.id).sort() };
    };
    /** /debug/endpoints answered by each worker in turn: both must show `ids`. */
    const bothSee = async (ids: string[]): Promise<boolean> => {
      const answers = [await endpointsOf(), await endpointsOf()];
      return new Set(answers.map((a) => a.worker)).size === 2 && answers.every((a) => JSON.stringify(a.ids) === JSON.stringify([...ids].sort()));
    };
    writeEndpoints([pods[0]!]);
    await waitFor(() => bothSee([pods[0]!.id]), 20_000, 'both workers to drop the pod removed from the file');
    for (let i = 0; i < 4; i++) expect((await complete(gatewayPort, `only one pod now ${i}`)).endpoint).toBe(pods[0]!.id);
    writeEndpoints(pods);
    await waitFor(() => bothSee(pods.map((p) => p.id)), 20_000, 'both workers to take the pod back');
    // One process reads the file, the primary: no worker watches it.
    const reloads = epp.output().split('\n').filter((l) => l.includes('"endpoints file reloaded"'));
    expect(reloads.length).toBeGreaterThan(0);
    expect(reloads.filter((l) => !l.includes('"role":"primary"'))).toEqual([]);
  });

  it("teaches every worker's built-in latency model with both workers' requests", async () => {
    const samples = async (): Promise<{ worker: string | null; ttft: number }[]> => {
      const out: { worker: string | null; ttft: number }[] = [];
      for (let i = 0; i < 2; i++) {
        const res = await fetch(`http://127.0.0.1:${metricsPort}/debug/latency-predictor`);
        out.push({ worker: res.headers.get('x-kvix-worker'), ttft: ((await res.json()) as { samples: { ttft: number } }).samples.ttft });
      }
      return out;
    };
    const before = await samples();
    const sent: string[] = [];
    await waitFor(
      async () => {
        const r = await streamed(gatewayPort, `teach me ${sent.length}`);
        expect(r.status).toBe(200);
        sent.push(r.worker ?? '?');
        return sent.length >= 6 && new Set(sent).size === 2;
      },
      20_000,
      () => `streamed requests answered by both workers (so far: ${JSON.stringify(sent)})`,
    );
    // Each worker learned from every request, its own and the other's: none has only its share.
    let now = before;
    await waitFor(
      async () => {
        now = await samples();
        return new Set(now.map((s) => s.worker)).size === 2 && now.every((s) => s.ttft - (before.find((b) => b.worker === s.worker)?.ttft ?? 0) >= sent.length);
      },
      20_000,
      () => `both workers to learn from all ${sent.length} requests (${JSON.stringify(sent)}): before ${JSON.stringify(before)}, now ${JSON.stringify(now)}`,
    );
  });

  it('answers the debug routes on the metrics port from its workers, in turn', async () => {
    const get = async (path: string, init?: RequestInit) => {
      const res = await fetch(`http://127.0.0.1:${metricsPort}${path}`, init);
      return { status: res.status, worker: res.headers.get('x-kvix-worker'), body: (await res.json()) as Record<string, unknown> };
    };
    const endpoints = await get('/debug/endpoints');
    expect(endpoints.status).toBe(200);
    expect((endpoints.body['endpoints'] as { id: string }[]).map((e) => e.id).sort()).toEqual(pods.map((p) => p.id).sort());
    const scheduler = await get('/debug/scheduler');
    expect(scheduler.status).toBe(200);
    expect(scheduler.body).toHaveProperty('fallbacks');
    expect(new Set([endpoints.worker, scheduler.worker]).size).toBe(2);
    // Off unless started with --debug-routes: the worker's own answer, forwarded as it is.
    const score = await get('/debug/score', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, prompt: 'hello' }) });
    expect(score.status).toBe(404);
    expect(score.body).toMatchObject({ error: { code: 'DEBUG_ROUTES_OFF' } });
    expect(score.worker).not.toBeNull();
  });

  it('serves /ui and /v1/analytics on the primary, counting every decision of both workers exactly once', async () => {
    const seen = await routedByBoth((i) => `${'Summarise the report in three lines. '.repeat(20)} Report number ${i}.`);
    expect(new Set(seen.map((s) => s.worker)).size).toBe(2);
    const ids = [...new Set(answeredBy)].sort();
    expect(ids).toHaveLength(2);
    // Each request was counted by the worker that routed it; the primary's document is their sum.
    const total = answeredBy.length;
    const last = seen.at(-1)!.endpoint!;
    let doc = await analytics();
    await waitFor(
      async () => {
        doc = await analytics();
        // ...and the primary to have ingested the last one's blocks from its pod's events.
        return doc.routing.decisions >= total && doc.scoring.requests >= total && (doc.index.by_pod[last]?.entries ?? 0) > 0;
      },
      20_000,
      () => `the analytics to count the ${total} requests routed so far, and the index to hold ${last}'s blocks: ${JSON.stringify(doc)}`,
    );
    expect(doc.routing.decisions).toBe(total);
    expect(doc.scoring.requests).toBe(total);
    expect(Object.values(doc.routing.by_pod).reduce((n, t) => n + t.requests, 0)).toBe(total);
    expect(doc.workers.included.sort()).toEqual(ids);
    expect(doc.workers.missing).toEqual([]);
    // The index side is the primary's own: both pods' event streams.
    expect(Object.keys(doc.events).sort()).toEqual(pods.map((p) => p.id).sort());
    // The page, and its history sampling the same merged counts.
    const page = await fetch(`http://127.0.0.1:${metricsPort}/ui/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(await page.text()).toContain('src="app.js"');
    const routedBlocks = Object.values(doc.routing.by_pod).reduce((n, t) => n + t.blocks, 0);
    let history: { points: { t: number; by_pod: Record<string, { blocks: number }> }[] } = { points: [] };
    await waitFor(
      async () => {
        history = (await (await fetch(`http://127.0.0.1:${metricsPort}/v1/analytics/history`)).json()) as typeof history;
        const last = history.points.at(-1);
        return last !== undefined && Object.values(last.by_pod).reduce((n, t) => n + t.blocks, 0) === routedBlocks;
      },
      20_000,
      () => `a history point with the ${routedBlocks} routed blocks of the merged document: ${JSON.stringify(history.points.at(-1))}`,
    );
    // Shared prefixes are merged too: the long instruction every request began with.
    expect(doc.top_prefixes.some((p) => p.requests >= seen.length)).toBe(true);
  });

  it("counts each speculative entry's confirmation once on /metrics, though every worker's index copy sees it", async () => {
    // Decisions whose blocks the pods then store: their KV events confirm the speculative entries in every copy.
    await routedByBoth((i) => `${'Confirm the speculation of this decision. '.repeat(30)} Number ${i}.`);
    const confirmedOnMetrics = async (): Promise<number> => Number(/^kvix_index_speculative_confirmed_total (\d+)/m.exec(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text())?.[1] ?? -1);
    let pair: [number, number] = [0, 0];
    await waitFor(
      async () => {
        // Read twice around the analytics (the longest-running copy's count): no confirmation landed in between if both agree.
        const before = await confirmedOnMetrics();
        const doc = (await analytics()) as unknown as { speculation: { confirmed: number } };
        const after = await confirmedOnMetrics();
        pair = [after, doc.speculation.confirmed];
        return before === after && after > 0 && after === doc.speculation.confirmed;
      },
      20_000,
      () => `/metrics and the analytics to agree on confirmations (metrics, analytics): ${JSON.stringify(pair)}`,
    );
  });

  it('replaces a killed worker, logs its death once, and keeps routing with both workers', async () => {
    const before = await workers();
    const victim = before.workers[0]!;
    process.kill(victim.pid, 'SIGKILL');
    let view = before;
    await waitFor(
      async () => {
        view = await workers();
        return view.restarts === 1 && view.workers.length === 2 && view.workers.every((w) => w.pid !== victim.pid && w.started && w.answered && w.ready);
      },
      60_000,
      () => `a new worker in place of pid ${victim.pid}: ${JSON.stringify(view)}`,
    );
    await waitFor(ready, 30_000, 'readiness after the restart');
    expect(epp.output().split('\n').filter((l) => l.includes('epp worker died')).length).toBe(1);
    const seen = await routedByBoth((i) => `after the restart ${i}`);
    expect(seen.some((s) => s.worker !== String(victim.worker))).toBe(true);
  });

  it("leaves a dead worker's counts out of the analytics (its replacement counts from zero), counting none twice", async () => {
    const live = (await workers()).workers.map((w) => String(w.worker)).sort();
    const expected = answeredBy.filter((w) => live.includes(w)).length;
    // The dead worker routed some of the requests: they are gone from the sum.
    expect(expected).toBeLessThan(answeredBy.length);
    let doc = await analytics();
    await waitFor(
      async () => {
        doc = await analytics();
        return doc.routing.decisions >= expected;
      },
      20_000,
      () => `the analytics to count the live workers' ${expected} requests: ${JSON.stringify(doc)}`,
    );
    expect(doc.routing.decisions).toBe(expected);
    expect(doc.workers.included.sort()).toEqual(live);
  });

  it('stops its workers and itself cleanly on SIGTERM', async () => {
    const pids = (await workers()).workers.map((w) => w.pid);
    expect(await epp.stop('SIGTERM')).toBe(0);
    expect(epp.output()).toContain('"epp stopped"');
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
  });
});

describe('kvix-epp --routing-workers validation', () => {
  it('refuses a worker count that is not a whole number ≥ 1 or auto, with exit code 2, and resolves auto', async () => {
    for (const bad of ['0', 'two', '-1']) {
      const p = cli.run(['--routing-workers', bad, '--print-config']);
      expect(await p.exited).toBe(2);
      expect(p.output()).toContain('routingWorkers');
    }
    const auto = cli.run(['--routing-workers', 'auto', '--print-config']);
    expect(await auto.exited).toBe(0);
    expect((JSON.parse(auto.output()) as { routingWorkers: unknown }).routingWorkers).toBe('auto');
  });
});

describe('two kvix-epp replicas with --routing-workers 2 each, active-active over NATS', () => {
  // Two EPPs of three processes each start and wait on each other's state: longer than one wait's ceiling.
  it('publishes and follows the index stream, and shares decisions and load between replicas through each primary', async () => {
    const nats = await startNats();
    const dir = mkdtempSync(join(tmpdir(), 'kvix-epp-nats-'));
    const file = join(dir, 'endpoints.yaml');
    writeFileSync(file, stringify({ endpoints: pods.map((p, i) => ({ name: `sim-${i}`, address: '127.0.0.1', port: Number(p.id.split(':')[1]), eventPort: p.eventPort, model: MODEL })) }));
    const replica = async (id: string, index: 'publish' | 'follow'): Promise<{ proc: ManagedProcess; gw: number; mp: number; metrics: () => Promise<string> }> => {
      const [gw, xp, mp] = (await freePorts(3)) as [number, number, number];
      const proc = cli.run(['--routing-workers', '2', '--nats-url', nats.url, '--replicate-index', index, '--replica-id', id, '--endpoints-file', file, '--gateway-port', String(gw), '--ext-proc-port', String(xp), '--metrics-port', String(mp), '--tokenizer-workers', '0']);
      await waitFor(async () => proc.child.exitCode !== null || (await fetch(`http://127.0.0.1:${mp}/readyz`).then((r) => r.status, () => 0)) === 200, 60_000, () => `replica ${id} and its workers ready\n${proc.output()}`);
      expect(proc.child.exitCode, proc.output()).toBeNull();
      return { proc, gw, mp, metrics: async () => (await fetch(`http://127.0.0.1:${mp}/metrics`)).text() };
    };
    const counter = (text: string, name: string): number => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
    const a = await replica('a', 'publish');
    const b = await replica('b', 'follow');
    try {
      const status = (await (await fetch(`http://127.0.0.1:${b.mp}/debug/replication`)).json()) as { index: string; ready: boolean };
      expect(status).toMatchObject({ index: 'follow', ready: true });

      // Decisions made by A's workers reach B's workers (B routes nothing itself): their speculative
      // entries in B's index copies end confirmed by the stream or expired, and nothing else puts any there.
      let sent = 0;
      let onB = '';
      await waitFor(
        async () => {
          expect((await complete(a.gw, `Replica A decides this one (${sent++}). ${'Plan the route in numbered steps. '.repeat(30)}`)).status).toBe(200);
          const text = await b.metrics();
          onB = text.split('\n').filter((l) => /specul/.test(l) && !l.startsWith('#')).join('\n');
          return counter(text, 'kvix_replication_speculations_received_total') > 0 && counter(text, 'kvix_index_speculative_confirmed_total') + counter(text, 'kvix_index_speculative_expired_total') > 0;
        },
        30_000,
        () => `B's workers to hold A's decisions (${sent} sent):\n${onB}`,
      );
      expect(counter(await a.metrics(), 'kvix_replication_speculations_sent_total')).toBeGreaterThan(0);

      // A prompt only pod 1's KV events place: A ingests and publishes them, B's primary follows the
      // stream and both its workers route the prompt to pod 1.
      const holder = pods[1]!;
      const prompt = `A follower's workers read the stream. ${'Each operation reaches every worker. '.repeat(60)}`;
      expect((await complete(Number(holder.id.split(':')[1]), prompt)).status).toBe(200);
      const seen: { worker: string | undefined; endpoint: string | undefined }[] = [];
      await waitFor(
        async () => {
          seen.push(await complete(b.gw, prompt));
          const tail = seen.slice(-4);
          return tail.length === 4 && new Set(tail.map((s) => s.worker)).size === 2 && tail.every((s) => s.endpoint === holder.id);
        },
        30_000,
        () => `both of B's workers to send the prompt to ${holder.id}: ${JSON.stringify(seen)}`,
      );

      // Long answers routed by A: B's workers count them as the other replica's requests in flight, then none.
      const peersOnB = async (): Promise<number[]> => ((await (await fetch(`http://127.0.0.1:${b.mp}/debug/workers`)).json()) as { workers: WorkerView[] }).workers.map((w) => Object.values(w.inFlight.peers).reduce((n, c) => n + c, 0));
      const long = Array.from({ length: 4 }, (_, i) => complete(a.gw, `long answer ${i}`, 1000));
      let view: number[] = [];
      await waitFor(async () => (view = await peersOnB()).length === 2 && view.every((n) => n > 0), 30_000, () => `both of B's workers to count A's requests in flight: ${JSON.stringify(view)}`);
      expect((await Promise.all(long)).map((r) => r.status)).toEqual([200, 200, 200, 200]);
      await waitFor(async () => (view = await peersOnB()).every((n) => n === 0), 30_000, () => `nothing in flight on B's workers once A's answers ended: ${JSON.stringify(view)}`);
    } finally {
      await b.proc.stop('SIGTERM');
      await a.proc.stop('SIGTERM');
      await nats.dispose();
    }
  }, ceiling(180_000));
});

describe('kvix-epp --routing-workers 2 with the Redis index', () => {
  it('ingests into Redis in the primary and routes with both workers reading it: a prompt only a KV event placed follows its pod', async () => {
    const redis = await startRedis();
    // The EPP starts while Redis is down: every process must keep answering (a worker whose index
    // could not give its counts once died of it), then serve once Redis is up.
    await redis.stop();
    const dir = mkdtempSync(join(tmpdir(), 'kvix-epp-redis-'));
    writeFileSync(join(dir, 'endpoints.yaml'), stringify({ endpoints: pods.map((p, i) => ({ name: `sim-${i}`, address: '127.0.0.1', port: Number(p.id.split(':')[1]), eventPort: p.eventPort, model: MODEL })) }));
    const [gw, xp, mp] = (await freePorts(3)) as [number, number, number];
    const other = cli.run(['--routing-workers', '2', '--redis-url', redis.url, '--endpoints-file', join(dir, 'endpoints.yaml'), '--gateway-port', String(gw), '--ext-proc-port', String(xp), '--metrics-port', String(mp), '--tokenizer-workers', '0']);
    try {
      let view: unknown = null;
      await waitFor(
        async () => {
          if (other.child.exitCode !== null) return true;
          const w = (await fetch(`http://127.0.0.1:${mp}/debug/workers`).then((r) => r.json(), () => null)) as { workers: WorkerView[] } | null;
          view = w;
          return w !== null && w.workers.length === 2 && w.workers.every((x) => x.started && x.answered);
        },
        60_000,
        () => `both workers started and answering with Redis down: ${JSON.stringify(view)}\n${other.output()}`,
      );
      expect(other.child.exitCode, other.output()).toBeNull();
      await redis.start();
      await waitFor(async () => other.child.exitCode !== null || (await fetch(`http://127.0.0.1:${mp}/readyz`).then((r) => r.status, () => 0)) === 200, 60_000, () => `the Redis EPP and its workers ready\n${other.output()}`);
      expect(other.child.exitCode, other.output()).toBeNull();
      expect(other.output()).not.toContain('epp worker died');
      // Straight to pod 0, never through the EPP: only its KV events, in Redis, can tell where it is. A
      // fresh prompt each time until the primary's index (Redis) holds the pod's blocks: events a pod
      // publishes before the primary's subscription is connected are not seen (no replay port here).
      const holder = pods[0]!;
      let prompt = '';
      let attempt = 0;
      await waitFor(
        async () => {
          prompt = `You are a Redis-backed assistant (${attempt++}). ${'Every worker reads the same shared index. '.repeat(60)}`;
          expect((await complete(Number(holder.id.split(':')[1]), prompt)).status).toBe(200);
          const counts = (await (await fetch(`http://127.0.0.1:${mp}/debug/pods`)).json()) as { pods: { pod: string; entries: number }[] };
          return counts.pods.some((c) => c.pod === holder.id && c.entries > 0);
        },
        30_000,
        'the primary to ingest the pod\'s KV events into Redis',
      );
      const seen: { worker: string | undefined; endpoint: string | undefined }[] = [];
      await waitFor(
        async () => {
          const r = await complete(gw, prompt);
          seen.push(r);
          const tail = seen.slice(-4);
          return tail.length === 4 && new Set(tail.map((s) => s.worker)).size === 2 && tail.every((s) => s.endpoint === holder.id);
        },
        30_000,
        () => `both workers to send the prompt to ${holder.id}: ${JSON.stringify(seen)}`,
      );
    } finally {
      await other.stop('SIGTERM');
      await redis.stop();
    }
  }, ceiling(180_000));
});

describe('kvix-epp --routing-workers 2, speculative entries', () => {
  it('shares a decision between workers: a same-prefix burst spread over both lands on the first decision\'s pod before any KV event', async () => {
    // The EPP hears no KV events here (the event ports lead nowhere): only the decisions' speculative
    // entries, kept long enough not to expire during the test, can steer the requests.
    const dir = mkdtempSync(join(tmpdir(), 'kvix-epp-spec-'));
    const nowhere = await freePorts(pods.length);
    writeFileSync(join(dir, 'endpoints.yaml'), stringify({ endpoints: pods.map((p, i) => ({ name: `sim-${i}`, address: '127.0.0.1', port: Number(p.id.split(':')[1]), eventPort: nowhere[i], model: MODEL })) }));
    writeFileSync(join(dir, 'config.yaml'), stringify({ index: { speculativeTtlMs: 600_000, adaptiveSpeculativeTtl: { enabled: false } }, ingest: { readinessTimeoutMs: 1000 } }));
    const [gw, xp, mp] = (await freePorts(3)) as [number, number, number];
    const other = cli.run(['--routing-workers', '2', '--config', join(dir, 'config.yaml'), '--endpoints-file', join(dir, 'endpoints.yaml'), '--gateway-port', String(gw), '--ext-proc-port', String(xp), '--metrics-port', String(mp), '--tokenizer-workers', '0']);
    await waitFor(() => other.output().includes('"epp started"') || other.child.exitCode !== null, 60_000, 'the second EPP to start');
    expect(other.child.exitCode, other.output()).toBeNull();
    const prompt = `Shared instructions for every agent. ${'Answer in one short sentence and cite the page. '.repeat(60)}`;
    const first = await complete(gw, `${prompt} first`);
    expect(first.status).toBe(200);
    // The one decision so far is held, as speculative entries, by the worker that made it and the other.
    let view: unknown = null;
    await waitFor(
      async () => {
        const w = (await (await fetch(`http://127.0.0.1:${mp}/debug/workers`)).json()) as { workers: WorkerView[] };
        view = w;
        return w.workers.length === 2 && w.workers.every((x) => (x.pods.find((p) => p.pod === first.endpoint)?.speculative ?? 0) > 0);
      },
      20_000,
      () => `both workers to hold the first decision: ${JSON.stringify(view)}`,
    );
    const seen: { worker: string | undefined; endpoint: string | undefined }[] = [first];
    await waitFor(
      async () => {
        const r = await complete(gw, `${prompt} ${seen.length}`);
        seen.push(r);
        return new Set(seen.map((s) => s.worker)).size === 2;
      },
      20_000,
      () => `requests answered by both workers: ${JSON.stringify(seen)}`,
    );
    expect(seen.map((s) => s.endpoint)).toEqual(seen.map(() => first.endpoint));
    // /metrics shows the speculative entries the workers hold (the primary's own index has none), once, not per worker.
    const w = (await (await fetch(`http://127.0.0.1:${mp}/debug/workers`)).json()) as { workers: WorkerView[] };
    const held = Math.max(...w.workers.map((x) => x.pods.reduce((n, p) => n + p.speculative, 0)));
    const text = await (await fetch(`http://127.0.0.1:${mp}/metrics`)).text();
    const onMetrics = [...text.matchAll(/^kvix_index_pod_entries\{[^}]*kind="speculative"[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
    expect(held).toBeGreaterThan(0);
    expect(onMetrics).toBe(held);
    expect(await other.stop('SIGTERM')).toBe(0);
  });
});
