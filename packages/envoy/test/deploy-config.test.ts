import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { EnvoyError, EnvoyProcess, ENVOY_INSTALL_HINT, ENVOY_VERSION, envoyVersion, findEnvoy, localEnvoyConfig, readEnvoyConfig, validateEnvoyConfig } from '../src/index.js';

// Real Envoy (KVIX_ENVOY_BIN from .ci/run, or the repo's .venv-envoy): a missing one fails here.
function envoyBin(): string {
  const found = findEnvoy();
  if (!found) throw new EnvoyError('ENVOY_NOT_FOUND', `Envoy is not installed: ${ENVOY_INSTALL_HINT}`);
  return found.path;
}

type Node = Record<string, unknown>;
function at(value: unknown, ...path: (string | number)[]): unknown {
  let v = value;
  for (const key of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Node)[key as string];
  }
  return v;
}
const list = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);
const seconds = (value: unknown): number => Number(/^(\d+(?:\.\d+)?)s$/.exec(String(value))?.[1] ?? NaN);

const shipped = readEnvoyConfig();
const hcm = at(list(at(list(at(list(at(shipped, 'static_resources', 'listeners'))[0], 'filter_chains'))[0], 'filters'))[0], 'typed_config');
const extProc = at(list(at(hcm, 'http_filters')).find((f) => at(f, 'name') === 'envoy.filters.http.ext_proc'), 'typed_config');
const cluster = (name: string): unknown => list(at(shipped, 'static_resources', 'clusters')).find((c) => at(c, 'name') === name);
const route = at(list(at(list(at(hcm, 'route_config', 'virtual_hosts'))[0], 'routes'))[0], 'route');

describe('deploy/envoy/envoy.yaml on a real Envoy', () => {
  it(`is the Envoy ${ENVOY_VERSION} the repo pins`, () => {
    expect(envoyVersion(envoyBin())).toBe(ENVOY_VERSION);
  });

  it('passes envoy --mode validate without a deprecated field, as shipped and pointed at local processes', () => {
    for (const config of [shipped, localEnvoyConfig({ extProc: ['127.0.0.1:9002', '127.0.0.1:9012'], pods: ['127.0.0.1:8000', '127.0.0.1:8001'] }, shipped)]) {
      const result = validateEnvoyConfig(config, envoyBin());
      expect({ ok: result.ok, deprecated: result.deprecated }, result.output).toEqual({ ok: true, deprecated: [] });
    }
  });

  it('routes to the endpoints the EPP lists in envoy.lb metadata, in order, retrying connection failures and resets on the next', () => {
    const policy = at(list(at(cluster('vllm_pool'), 'load_balancing_policy', 'policies'))[0], 'typed_extension_config');
    expect(at(policy, 'name')).toBe('envoy.load_balancing_policies.override_host');
    expect(at(policy, 'typed_config', 'override_host_sources')).toEqual([{ metadata: { key: 'envoy.lb', path: [{ key: 'x-gateway-destination-endpoint' }] } }]);
    expect(at(policy, 'typed_config', 'selected_host_key')).toEqual({ key: 'envoy.lb', path: [{ key: 'x-gateway-destination-endpoint-served' }] });
    expect(String(at(route, 'retry_policy', 'retry_on')).split(',')).toEqual(expect.arrayContaining(['connect-failure', 'reset']));
    expect(at(route, 'timeout')).toBe('0s');
  });

  it('fails open, with bodies STREAMED so Envoy still holds what a dying EPP had, and replays streams a replica broke before answering', () => {
    expect(at(extProc, 'failure_mode_allow')).toBe(true);
    expect(at(extProc, 'send_body_without_waiting_for_header_response')).toBe(true);
    expect(at(extProc, 'processing_mode')).toMatchObject({ request_body_mode: 'STREAMED', response_body_mode: 'STREAMED', request_header_mode: 'SEND', response_header_mode: 'SEND' });
    expect(String(at(extProc, 'grpc_service', 'retry_policy', 'retry_on')).split(',')).toEqual(expect.arrayContaining(['connect-failure', 'unavailable', 'reset']));
    expect(at(extProc, 'metadata_options')).toEqual({ forwarding_namespaces: { untyped: ['envoy.lb.subset_hint', 'envoy.lb'] }, receiving_namespaces: { untyped: ['envoy.lb'] } });
  });

  it('never keeps a restarted EPP replica out for 10 s or more', () => {
    const od = at(cluster('epp'), 'outlier_detection');
    expect(seconds(at(od, 'max_ejection_time'))).toBeLessThanOrEqual(10);
    expect(at(od, 'successful_active_health_check_uneject_host') ?? true).toBe(true);
    const hc = list(at(cluster('epp'), 'health_checks'))[0];
    expect(seconds(at(hc, 'unhealthy_interval'))).toBeLessThan(1);
    expect(at(hc, 'healthy_threshold')).toBe(1);
  });
});

describe('EnvoyProcess', () => {
  let upstream: Server | undefined;
  afterAll(() => upstream?.close());

  it('runs the shipped configuration on loopback ports it reads back, and reports its hosts and stats', async () => {
    upstream = createServer((_req, res) => res.end('ok'));
    await new Promise<void>((r) => upstream!.listen(0, '127.0.0.1', r));
    const pod = `127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    const envoy = await EnvoyProcess.start({ bin: envoyBin(), config: localEnvoyConfig({ extProc: ['127.0.0.1:1'], pods: [pod] }, shipped) });
    try {
      expect(envoy.port()).toBeGreaterThan(0);
      expect(envoy.adminUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect((await envoy.hosts('vllm_pool')).map((h) => h.address)).toEqual([pod]);
      // No EPP at 127.0.0.1:1: FailOpen sends the request to a pod of the pool, round robin.
      const res = await fetch(`${envoy.url()}/v1/models`);
      expect({ status: res.status, body: await res.text() }).toEqual({ status: 200, body: 'ok' });
      expect(await envoy.stat('http.inference.ext_proc.failure_mode_allowed')).toBe(1);
    } finally {
      await envoy.stop();
    }
  });

  it('fails to start with Envoy\'s own words when the configuration is wrong', async () => {
    const bad = structuredClone(shipped);
    (at(bad, 'static_resources') as Node)['clusters'] = [{ name: 'epp', type: 'NO_SUCH_TYPE' }];
    await expect(EnvoyProcess.start({ bin: envoyBin(), config: bad, readyTimeoutMs: 20_000 })).rejects.toMatchObject({ code: 'ENVOY_START_FAILED', message: expect.stringMatching(/NO_SUCH_TYPE/) });
  });
});
