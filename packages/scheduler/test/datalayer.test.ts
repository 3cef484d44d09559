import { waitFor, freePorts } from '@kvix/test-support';
import { resolveSimConfig, SimPod } from '@kvix/vllm-sim';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { EndpointRegistry, parseEndpointMetrics } from '../src/index.js';

const silent = pino({ level: 'silent' });
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('the data layer', () => {
  it('reads vLLM and SGLang load metrics, summing engines and averaging KV usage', () => {
    const vllm = parseEndpointMetrics(
      [
        'vllm:num_requests_waiting{engine="0",model_name="m"} 3.0',
        'vllm:num_requests_waiting{engine="1",model_name="m"} 2.0',
        'vllm:num_requests_running{engine="0",model_name="m"} 4.0',
        'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5',
        'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.25',
        'vllm:cache_config_info{block_size="16",num_gpu_blocks="4096"} 1.0',
        'vllm:lora_requests_info{max_lora="4",running_lora_adapters="sql,chat",waiting_lora_adapters=""} 1.7e9',
      ].join('\n'),
      7,
    );
    expect(vllm).toEqual({ waiting: 5, running: 4, kvUsage: 0.375, blockSize: 16, numGpuBlocks: 4096, loras: ['sql', 'chat'], scrapedAt: 7 });
    expect(parseEndpointMetrics('sglang:num_queue_reqs 2\nsglang:num_running_reqs 1\nsglang:token_usage 0.9\n', 1)).toMatchObject({ waiting: 2, running: 1, kvUsage: 0.9 });
    expect(parseEndpointMetrics('process_cpu_seconds_total 3\n', 1)).toBeNull();
  });

  it('takes a pod out of the candidate set when it stops answering, and back when it answers', async () => {
    const [port, eventPort, closedPort] = await freePorts(3);
    const start = () => SimPod.start(resolveSimConfig({ port, logLevel: 'silent', kvEventsConfig: { enable_kv_cache_events: true, endpoint: `tcp://*:${eventPort}` } }, {}), silent);
    let pod = await start();
    cleanups.push(() => pod.stop());
    const registry = new EndpointRegistry({ scheme: 'http', path: '/metrics', scrapeIntervalMs: 50, scrapeTimeoutMs: 500, staleAfterMs: 2000, drainingLabel: 'kvix.io/draining', logger: silent });
    cleanups.push(() => registry.stop());
    const target = { id: `127.0.0.1:${port}`, name: 'sim-0', address: '127.0.0.1', port: port!, rank: 0, eventEndpoint: null, replayEndpoint: null, model: 'Qwen/Qwen3-0.6B' };
    registry.setTargets([target, { ...target, id: `127.0.0.1:${closedPort}`, name: 'gone', port: closedPort! }]);
    registry.start();
    await waitFor(() => registry.candidates().some((c) => c.metrics !== null), 5000, 'a first scrape');
    expect(registry.candidates().map((c) => c.endpoint.id)).toEqual([target.id]);
    expect(registry.status().find((s) => s.id === `127.0.0.1:${closedPort}`)).toMatchObject({ healthy: false, reason: expect.stringContaining('ECONNREFUSED') });

    await pod.stop();
    await waitFor(() => registry.candidates().length === 0, 5000, 'the stopped pod to leave');
    pod = await start();
    await waitFor(() => registry.candidates().length === 1, 5000, 'the pod to come back');

    registry.setTargets([{ ...target, labels: { 'kvix.io/draining': 'true' } }]);
    expect(registry.candidates()).toEqual([]);
    expect(registry.status()[0]).toMatchObject({ draining: true });
  });

  it('keeps a pod whose metrics answer slowly while its last metrics are fresh, and takes it out once they are stale', async () => {
    // A metrics endpoint that answers at first, then stops answering (a busy or hung pod): the
    // connection is accepted, the answer never comes, so every later scrape times out.
    const { createServer } = await import('node:http');
    let hang = false;
    let hung = 0;
    let hungClosed = 0;
    const server = createServer((req, res) => {
      if (!hang) return void res.end('vllm:num_requests_waiting{model_name="m"} 0\nvllm:num_requests_running{model_name="m"} 0\nvllm:kv_cache_usage_perc{model_name="m"} 0\n');
      hung++;
      req.socket.on('close', () => hungClosed++);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))));
    const port = (server.address() as { port: number }).port;
    let clock = 1_000_000;
    const errors: string[] = [];
    const registry = new EndpointRegistry({ scheme: 'http', path: '/metrics', scrapeIntervalMs: 20, scrapeTimeoutMs: 50, staleAfterMs: 2000, drainingLabel: 'kvix.io/draining', logger: silent, now: () => clock, onScrapeError: (kind) => errors.push(kind) });
    cleanups.push(() => registry.stop());
    registry.setTargets([{ id: `127.0.0.1:${port}`, name: 'slow', address: '127.0.0.1', port, rank: 0, eventEndpoint: null, replayEndpoint: null, model: 'm' }]);
    registry.start();
    await waitFor(() => registry.candidates().some((c) => c.metrics !== null), 5000, 'a first scrape');
    hang = true;
    // Every scrape times out from now on; the injected clock stands still, so the last metrics stay
    // fresh and the pod stays a candidate (the old rule took it out on the first timeout). A pod
    // scrape starts only once the one before it is over, so a third hung request means two timed out,
    // and each timed-out request was given up (its connection closed), not left hanging.
    await waitFor(() => hung >= 3 && hungClosed >= 2, 5000, 'two scrapes to time out');
    expect(errors.filter((k) => k === 'poll').length).toBeGreaterThanOrEqual(2);
    expect(registry.candidates()).toHaveLength(1);
    expect(registry.status()[0]).toMatchObject({ healthy: true });
    // Once they are stale, the next timeout takes it out, with the reason.
    clock += 2001;
    await waitFor(() => registry.candidates().length === 0, 5000, 'the hung pod to leave');
    expect(registry.status()[0]).toMatchObject({ healthy: false, reason: 'metrics scrape failed: timeout' });
  });

  it('applies scrapes another process made, never scraping itself, with the same rules as its own (external metrics)', async () => {
    // A metrics server that would answer: any request to it would be this registry scraping.
    const { createServer } = await import('node:http');
    let reads = 0;
    const server = createServer((_req, res) => (reads++, res.end('vllm:num_requests_waiting{model_name="m"} 0\n')));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const port = (server.address() as { port: number }).port;
    let clock = 1_000_000;
    const relayed: string[] = [];
    const registry = new EndpointRegistry({ scheme: 'http', path: '/metrics', scrapeIntervalMs: 10, scrapeTimeoutMs: 500, staleAfterMs: 2000, drainingLabel: 'kvix.io/draining', logger: silent, now: () => clock, metricsSource: 'external', onScraped: (id) => relayed.push(id) });
    cleanups.push(() => registry.stop());
    const id = `127.0.0.1:${port}`;
    registry.setTargets([{ id, name: 'a', address: '127.0.0.1', port, rank: 0, eventEndpoint: null, replayEndpoint: null, model: 'm' }]);
    registry.start();
    const metrics = { waiting: 3, running: 1, kvUsage: 0.5, blockSize: 16, numGpuBlocks: 100, loras: [], scrapedAt: clock };
    registry.recordScrape(id, { metrics });
    expect(registry.candidates()[0]!.metrics).toEqual(metrics);
    // A timeout while the last metrics are fresh keeps the pod; once they are stale it leaves, and a good scrape brings it back.
    registry.recordScrape(id, { failure: 'timeout', timeout: true });
    expect(registry.candidates()).toHaveLength(1);
    clock += 2001;
    registry.recordScrape(id, { failure: 'timeout', timeout: true });
    expect(registry.status()[0]).toMatchObject({ healthy: false, reason: 'metrics scrape failed: timeout' });
    registry.recordScrape(id, { metrics: { ...metrics, scrapedAt: clock } });
    expect(registry.candidates()).toHaveLength(1);
    registry.recordScrape(id, { failure: 'ECONNREFUSED', timeout: false });
    expect(registry.candidates()).toHaveLength(0);
    // An endpoint it does not know is ignored.
    registry.recordScrape('10.0.0.1:1', { metrics });
    expect(registry.size).toBe(1);
    // Its timer never ran a scrape (it would have had dozens of chances); nothing is relayed from it.
    await new Promise((r) => setTimeout(r, 100));
    expect(reads).toBe(0);
    expect(relayed).toEqual([]);
  });

  it('reports each of its own scrapes, good or failed, to onScraped (what a scraping primary relays)', async () => {
    const { createServer } = await import('node:http');
    let answer = 'vllm:num_requests_waiting{model_name="m"} 2\nvllm:num_requests_running{model_name="m"} 1\nvllm:kv_cache_usage_perc{model_name="m"} 0.25\n';
    const server = createServer((_req, res) => res.end(answer));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))));
    const port = (server.address() as { port: number }).port;
    const outcomes: unknown[] = [];
    const errors: string[] = [];
    const registry = new EndpointRegistry({ scheme: 'http', path: '/metrics', scrapeIntervalMs: 20, scrapeTimeoutMs: 500, staleAfterMs: 2000, drainingLabel: 'kvix.io/draining', logger: silent, onScrapeError: (k) => errors.push(k), onScraped: (id, outcome) => outcomes.push([id, outcome]) });
    cleanups.push(() => registry.stop());
    const id = `127.0.0.1:${port}`;
    registry.setTargets([{ id, name: 'a', address: '127.0.0.1', port, rank: 0, eventEndpoint: null, replayEndpoint: null, model: 'm' }]);
    registry.start();
    await waitFor(() => outcomes.length > 0, 5000, 'a first scrape');
    expect(outcomes[0]).toEqual([id, { metrics: expect.objectContaining({ waiting: 2, running: 1, kvUsage: 0.25 }) }]);
    answer = 'not prometheus at all {{{\n';
    await waitFor(() => registry.candidates().length === 0, 5000, 'the unreadable answer to take it out');
    const last = outcomes.at(-1) as [string, { failure: string; timeout: boolean }];
    expect(last[1].timeout).toBe(false);
    expect(last[1].failure).toMatch(/metrics/);
    expect(errors).toContain('extract');
  });

  it('counts what other router replicas have in flight to an endpoint, and tells them about its own', () => {
    const registry = new EndpointRegistry({ scheme: 'http', path: '/metrics', scrapeIntervalMs: 60_000, scrapeTimeoutMs: 500, staleAfterMs: 2000, drainingLabel: 'kvix.io/draining', logger: silent });
    const target = { id: '127.0.0.1:1', name: 'a', address: '127.0.0.1', port: 1, rank: 0, eventEndpoint: null, replayEndpoint: null, model: 'm' };
    registry.setTargets([target, { ...target, id: '127.0.0.1:2', name: 'b', port: 2 }]);
    const changes: [string, number][] = [];
    registry.onInFlightChange((id, n) => changes.push([id, n]));
    registry.acquire('127.0.0.1:1');
    registry.acquire('127.0.0.1:1');
    registry.release('127.0.0.1:1');
    expect(changes).toEqual([['127.0.0.1:1', 1], ['127.0.0.1:1', 2], ['127.0.0.1:1', 1]]);
    expect(registry.ownInFlight()).toEqual(new Map([['127.0.0.1:1', 1]]));
    registry.setPeerInFlight((id) => (id === '127.0.0.1:2' ? 5 : 0));
    // The load scorers see the sum; the status page keeps the two apart.
    expect(registry.candidates().map((c) => [c.endpoint.id, c.inFlight])).toEqual([['127.0.0.1:1', 1], ['127.0.0.1:2', 5]]);
    expect(registry.status().map((s) => [s.inFlight, s.peerInFlight])).toEqual([[1, 0], [0, 5]]);
    registry.stop();
  });
});
