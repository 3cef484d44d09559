import { freePorts, waitFor } from '@kvix/test-support';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Epp, EppConfigSchema } from '../src/index.js';

const MODEL = 'Qwen/Qwen3-0.6B';
const silent = pino({ level: 'silent' });

/**
 * A model server that closes a kept-alive connection the moment a second request arrives on it,
 * without answering: what a server whose idle timeout fired just as the proxy reused the
 * connection looks like from the proxy.
 */
let upstream: Server;
/** Connections that carried inference requests (the EPP's own /metrics scrapes excluded). */
const inferenceSockets = new Set<Socket>();
let epp: Epp;
let gateway: string;

beforeAll(async () => {
  const [port] = await freePorts(1);
  const served = new WeakMap<Socket, number>();
  upstream = createServer((req, res) => {
    if (req.url === '/metrics') {
      res.end('vllm:num_requests_waiting{model_name="m"} 0\nvllm:num_requests_running{model_name="m"} 0\nvllm:kv_cache_usage_perc{model_name="m"} 0\n');
      return;
    }
    inferenceSockets.add(req.socket);
    const n = (served.get(req.socket) ?? 0) + 1;
    served.set(req.socket, n);
    if (n > 1) {
      req.socket.destroy();
      return;
    }
    req.resume();
    req.on('end', () => res.end(JSON.stringify({ id: 'cmpl-1', object: 'text_completion', model: MODEL, choices: [{ index: 0, text: 'ok', finish_reason: 'stop' }] })));
  });
  await new Promise<void>((resolve) => upstream.listen(port, '127.0.0.1', resolve));
  const file = join(mkdtempSync(join(tmpdir(), 'kvix-gw-')), 'endpoints.yaml');
  writeFileSync(file, stringify({ endpoints: [{ name: 'pod-0', address: '127.0.0.1', port, model: MODEL }] }));
  const config = EppConfigSchema.parse({
    logLevel: 'silent',
    gateway: { host: '127.0.0.1', port: 0 },
    extProc: { enabled: false },
    metrics: { host: '127.0.0.1', port: 0 },
    ingest: { endpointsFile: file, readinessTimeoutMs: 3000 },
    tokenization: { workers: 0 },
    scheduler: {
      plugins: [{ type: 'queue-scorer' }],
      schedulingProfiles: [{ name: 'default', plugins: [{ pluginRef: 'queue-scorer' }] }],
    },
  });
  epp = await Epp.start(config, silent);
  gateway = `http://127.0.0.1:${epp.gateway!.port}`;
  await waitFor(async () => (await fetch(`http://127.0.0.1:${epp.metricsPort}/readyz`)).status === 200, 15_000, 'readiness');
});

afterAll(async () => {
  await epp?.stop();
  upstream?.closeAllConnections();
  await new Promise((resolve) => upstream?.close(resolve));
});

describe('gateway connection reuse', () => {
  it('sends a request again on a new connection when the endpoint closed the pooled one', async () => {
    const body = JSON.stringify({ model: MODEL, prompt: 'hello there', max_tokens: 4 });
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${gateway}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { choices: { text: string }[] }).choices[0]!.text).toBe('ok');
    }
    // The first request opened a connection; each later one found the pooled connection dead and opened another.
    expect(inferenceSockets.size).toBe(3);
  });
});
