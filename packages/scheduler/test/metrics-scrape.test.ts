import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import { freePort, makeTestPki, waitFor } from '@kvix/test-support';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { EndpointRegistry, type RegistryOptions } from '../src/index.js';

const silent = pino({ level: 'silent' });
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const METRICS = 'vllm:num_requests_waiting{model_name="m"} 1\nvllm:num_requests_running{model_name="m"} 2\nvllm:kv_cache_usage_perc{model_name="m"} 0.5\n';

interface MetricsServer {
  port: number;
  /** TCP connections accepted, and how many of them have closed since. */
  connections: number;
  closed: number;
  requests: IncomingHttpHeaders[];
}

async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void, host = '127.0.0.1', server: Server = createServer()): Promise<MetricsServer> {
  const state: MetricsServer = { port: 0, connections: 0, closed: 0, requests: [] };
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    state.requests.push(req.headers);
    handler(req, res);
  });
  // Count TCP connections (for TLS, the raw socket under the handshake).
  server.on('connection', (socket) => {
    state.connections++;
    socket.on('close', () => state.closed++);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, host, resolve));
  cleanups.push(() => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))));
  state.port = (server.address() as { port: number }).port;
  return state;
}

function registryFor(port: number, extra: Partial<RegistryOptions> = {}, address = '127.0.0.1'): { registry: EndpointRegistry; errors: ('poll' | 'extract')[] } {
  const errors: ('poll' | 'extract')[] = [];
  const registry = new EndpointRegistry({ scheme: 'http', path: '/metrics', scrapeIntervalMs: 10, scrapeTimeoutMs: 5_000, staleAfterMs: 60_000, drainingLabel: 'kvix.io/draining', logger: silent, onScrapeError: (kind) => errors.push(kind), ...extra });
  cleanups.push(() => registry.stop());
  registry.setTargets([{ id: `${address}:${port}`, name: 'pod', address, port, rank: 0, eventEndpoint: null, replayEndpoint: null, model: 'm' }]);
  registry.start();
  return { registry, errors };
}

describe('scraping /metrics', () => {
  it('reuses one kept-alive connection across scrapes, asks for no compression, and closes it on stop', async () => {
    const server = await serve((_req, res) => res.end(METRICS));
    const { registry, errors } = registryFor(server.port);
    await waitFor(() => server.requests.length >= 5, 10_000, 'five scrapes');
    expect(server.connections).toBe(1);
    expect(server.requests[0]!['accept-encoding']).toBeUndefined();
    expect(registry.candidates()[0]!.metrics).toMatchObject({ waiting: 1, running: 2, kvUsage: 0.5 });
    expect(errors).toEqual([]);
    registry.stop();
    await waitFor(() => server.closed === 1, 10_000, 'the scrape connection to close');
  });

  it('sends a scrape again on a new connection when the pod closes a kept-alive one as it is reused', async () => {
    // Every connection's second request is cut off unanswered: the race of a pod closing an idle
    // connection just as the router reuses it. Each scrape still succeeds, on a fresh connection.
    const perSocket = new WeakMap<object, number>();
    const server = await serve((req, res) => {
      const n = (perSocket.get(req.socket) ?? 0) + 1;
      perSocket.set(req.socket, n);
      if (n === 2) req.socket.destroy();
      else res.end(METRICS);
    });
    const { registry, errors } = registryFor(server.port);
    await waitFor(() => server.connections >= 4, 10_000, 'four connections');
    expect(errors).toEqual([]);
    expect(registry.status()[0]).toMatchObject({ healthy: true, reason: null });
  });

  it('takes a refusing or resetting pod out at once, with the error code as the reason', async () => {
    const closedPort = await freePort();
    const refused = registryFor(closedPort);
    await waitFor(() => refused.registry.status()[0]!.healthy === false, 10_000, 'the refusing pod to leave');
    expect(refused.registry.status()[0]!.reason).toBe('metrics scrape failed: ECONNREFUSED');
    expect(refused.errors[0]).toBe('poll');

    const server = await serve((req) => req.socket.destroy());
    const reset = registryFor(server.port);
    await waitFor(() => reset.registry.status()[0]!.healthy === false, 10_000, 'the resetting pod to leave');
    expect(reset.registry.status()[0]!.reason).toBe('metrics scrape failed: ECONNRESET');
    expect(reset.registry.candidates()).toEqual([]);
  });

  it('fails a non-2xx answer as a poll error, and keeps the connection for the next scrape', async () => {
    const server = await serve((_req, res) => {
      res.statusCode = 503;
      res.end('not ready');
    });
    const { registry, errors } = registryFor(server.port);
    await waitFor(() => server.requests.length >= 3 && errors.length >= 3, 10_000, 'three failed scrapes');
    expect(registry.status()[0]).toMatchObject({ healthy: false, reason: 'metrics scrape failed: HTTP 503' });
    expect(new Set(errors)).toEqual(new Set(['poll']));
    expect(server.connections).toBe(1);
  });

  it('refuses an answer over the size cap, declared or streamed, as a poll error', async () => {
    // Streamed (chunked, no length announced) past the default 8 MiB cap.
    const chunk = Buffer.alloc(1024 * 1024, '# padding padding padding padding\n');
    const streamed = await serve((_req, res) => {
      for (let i = 0; i < 8; i++) res.write(chunk);
      res.end(chunk);
    });
    const big = registryFor(streamed.port);
    await waitFor(() => big.registry.status()[0]!.healthy === false, 10_000, 'the oversized answer to fail');
    expect(big.registry.status()[0]!.reason).toBe(`metrics scrape failed: metrics answer larger than ${8 * 1024 * 1024} bytes`);
    expect(big.errors[0]).toBe('poll');

    // A Content-Length over the cap fails before any of the body is read.
    const declared = await serve((_req, res) => res.end(METRICS));
    const small = registryFor(declared.port, { maxMetricsBytes: METRICS.length - 1 });
    await waitFor(() => small.registry.status()[0]!.healthy === false, 10_000, 'the declared oversized answer to fail');
    expect(small.registry.status()[0]!.reason).toBe(`metrics scrape failed: metrics answer larger than ${METRICS.length - 1} bytes`);
    expect(small.errors[0]).toBe('poll');
  });

  it('speaks TLS for scheme https and checks the certificate against the default CAs', async () => {
    const pki = makeTestPki();
    cleanups.push(() => pki.dispose());
    const server = await serve((_req, res) => res.end(METRICS), '127.0.0.1', createHttpsServer({ cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey) }));
    // The test CA is not one node trusts by default, so the scrape must refuse the certificate.
    const { registry } = registryFor(server.port, { scheme: 'https' });
    await waitFor(() => registry.status()[0]!.healthy === false, 10_000, 'the untrusted certificate to be refused');
    expect(registry.status()[0]!.reason).toBe('metrics scrape failed: UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    expect(server.requests).toEqual([]);
  });

  it('scrapes a pod at an IPv6 address', async (ctx) => {
    let server: MetricsServer;
    try {
      server = await serve((_req, res) => res.end(METRICS), '::1');
    } catch {
      ctx.skip('no IPv6 loopback here');
      return;
    }
    const { registry } = registryFor(server.port, {}, '::1');
    await waitFor(() => registry.candidates()[0]?.metrics != null, 10_000, 'a scrape over IPv6');
    expect(server.requests[0]!.host).toBe(`[::1]:${server.port}`);
  });
});
