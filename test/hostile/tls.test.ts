/**
 * Issue 16: the gRPC servers and clients (ext_proc, indexer, remote-indexer client, envoy-sim) had
 * no TLS option, NATS no TLS or credentials. Certificates are made at run time (makeTestPki).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { EnvoySim } from '@kvix/envoy-sim';
import { Epp, EppConfigSchema } from '@kvix/epp';
import { Indexer, IndexerConfigSchema } from '@kvix/indexer';
import { Replication, ReplicationSettingsSchema } from '@kvix/replication';
import { ceiling, makeTestPki, startNats, waitFor, type TestPki } from '@kvix/test-support';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupsAfterEach } from '../support/cleanups.js';
import { chat, endpointsFile, send, silent, startSim, type Sim } from '../support/stack.js';
import { metric } from './support.js';

const cleanups = cleanupsAfterEach();
let pki: TestPki;
beforeAll(() => {
  pki = makeTestPki();
});
afterAll(() => pki.dispose());

async function sims(n: number): Promise<Sim[]> {
  const out: Sim[] = [];
  for (let i = 0; i < n; i++) {
    const s = await startSim();
    out.push(s);
    cleanups.push(() => s.pod.stop());
  }
  return out;
}

async function startEpp(fleet: Sim[], input: Record<string, unknown>): Promise<Epp> {
  const epp = await Epp.start(
    EppConfigSchema.parse({
      logLevel: 'silent',
      gateway: { enabled: false },
      metrics: { host: '127.0.0.1', port: 0 },
      latencyPredictor: { enabled: false },
      tokenization: { workers: 1 },
      ...input,
      extProc: { host: '127.0.0.1', port: 0, ...((input['extProc'] as object | undefined) ?? {}) },
      ingest: { endpointsFile: endpointsFile(fleet), readinessTimeoutMs: ceiling(5000) },
    }),
    silent,
  );
  cleanups.push(() => epp.stop());
  return epp;
}

async function envoy(epp: Epp, tls: Record<string, string> | undefined): Promise<EnvoySim> {
  const sim = await EnvoySim.start({ extProcTarget: `127.0.0.1:${epp.extProc!.port}`, ...(tls ? { extProcTls: tls } : {}) });
  cleanups.push(() => sim.close());
  return sim;
}

describe('ext_proc over mutual TLS', () => {
  it('routes for a proxy presenting a certificate from the client CA, and refuses the wrong CA, no certificate and plaintext', async () => {
    const fleet = await sims(1);
    const epp = await startEpp(fleet, { extProc: { tls: { certFile: pki.serverCert, keyFile: pki.serverKey, clientCaFile: pki.caCert } } });
    const good = await envoy(epp, { caFile: pki.caCert, certFile: pki.clientCert, keyFile: pki.clientKey });
    await waitFor(async () => (await send(good.url, '/v1/chat/completions', chat('over TLS'))).status === 200, 30_000, 'a request routed over mutual TLS');
    // A client certificate from another CA, none at all, a server verified against the wrong CA, plaintext: no route.
    const attempts: (Record<string, string> | undefined)[] = [{ caFile: pki.caCert, certFile: pki.otherClientCert, keyFile: pki.otherClientKey }, { caFile: pki.caCert }, { caFile: pki.otherCaCert, certFile: pki.clientCert, keyFile: pki.clientKey }, undefined];
    for (const tls of attempts) {
      const bad = await envoy(epp, tls);
      const answer = await send(bad.url, '/v1/chat/completions', chat('over TLS'));
      expect(answer.status, JSON.stringify(tls)).toBeGreaterThanOrEqual(500);
      expect(answer.endpoint).toBeNull();
    }
  });
});

describe('the indexer over mutual TLS', () => {
  it('scores for an EPP with the right certificates; with the wrong CA the EPP routes without its scores, and counts it', async () => {
    const fleet = await sims(1);
    const indexer = await Indexer.start(
      IndexerConfigSchema.parse({
        logLevel: 'silent',
        http: { host: '127.0.0.1', port: 0 },
        grpc: { host: '127.0.0.1', port: 0, tls: { certFile: pki.serverCert, keyFile: pki.serverKey, clientCaFile: pki.caCert } },
        ingest: { endpointsFile: endpointsFile(fleet) },
        tokenization: { workers: 1 },
      }),
      silent,
    );
    cleanups.push(() => indexer.stop());
    const remote = (tls: Record<string, string>) => ({
      embeddedIndex: false,
      scheduler: {
        plugins: [{ type: 'precise-prefix-cache-scorer', parameters: { indexer: `127.0.0.1:${indexer.grpcPort}`, timeoutMs: ceiling(5000), tls } }, { type: 'max-score-picker' }],
        schedulingProfiles: [{ name: 'default', plugins: [{ pluginRef: 'precise-prefix-cache-scorer' }, { pluginRef: 'max-score-picker' }] }],
      },
    });
    for (const [tls, ok] of [
      [{ caFile: pki.caCert, certFile: pki.clientCert, keyFile: pki.clientKey }, true],
      [{ caFile: pki.otherCaCert, certFile: pki.clientCert, keyFile: pki.clientKey }, false],
      [{ caFile: pki.caCert }, false],
    ] as const) {
      const epp = await startEpp(fleet, remote(tls));
      const proxy = await envoy(epp, undefined);
      expect((await send(proxy.url, '/v1/chat/completions', chat('scored remotely?'))).status).toBe(200);
      const errors = metric(await (await fetch(`http://127.0.0.1:${epp.metricsPort}/metrics`)).text(), 'kvix_epp_prefix_scorer_errors_total{code="UNAVAILABLE"}');
      expect({ tls, failures: errors > 0 }).toEqual({ tls, failures: !ok });
    }
  });
});

describe('the metrics port over HTTPS', () => {
  it('serves probes and metrics to a client trusting the CA, and a client of another CA is refused', async () => {
    const fleet = await sims(1);
    const epp = await startEpp(fleet, { metrics: { host: '127.0.0.1', port: 0, tls: { certFile: pki.serverCert, keyFile: pki.serverKey } } });
    const get = (ca: string): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = httpsRequest({ host: '127.0.0.1', port: epp.metricsPort, path: '/healthz', ca: [readFileSync(ca)] }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      });
    expect(await get(pki.caCert)).toBe(200);
    await expect(get(pki.otherCaCert)).rejects.toThrow();
  });
});

describe('NATS over TLS with a token', () => {
  it('connects with the CA and the token, and refuses to start with a wrong token', async () => {
    const tokenFile = join(pki.dir, 'nats-token');
    writeFileSync(tokenFile, 's3cret-nats-token\n');
    const wrongFile = join(pki.dir, 'nats-wrong-token');
    writeFileSync(wrongFile, 'not-the-token\n');
    const nats = await startNats({ extraArgs: ['--tls', '--tlscert', pki.serverCert, '--tlskey', pki.serverKey, '--auth', 's3cret-nats-token'] });
    cleanups.push(() => nats.dispose());
    const settings = (auth: string) => ReplicationSettingsSchema.parse({ natsUrl: `tls://127.0.0.1:${nats.port}`, natsTls: { caFile: pki.caCert }, natsAuth: { tokenFile: auth }, connectTimeoutMs: ceiling(2000) });
    const ok = await Replication.start(settings(tokenFile), { registry: new Registry(), logger: silent });
    cleanups.push(() => ok.close());
    expect(ok.status().connected).toBe(true);
    await expect(Replication.start(settings(wrongFile), { registry: new Registry(), logger: silent })).rejects.toThrow(/NATS/);
  });
});
