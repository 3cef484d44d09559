import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { DESTINATION_HEADER, LB_NAMESPACE, SERVED_KEY } from '../src/index.js';

// No Envoy binary can run here: this checks the fields the EPP's contract depends on.
// tools/vectors/check_envoy_config.py parses the same file as Envoy's Bootstrap proto.
const config: unknown = parse(readFileSync(new URL('../../../deploy/envoy/envoy.yaml', import.meta.url), 'utf8'));

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

const listener = list(at(config, 'static_resources', 'listeners'))[0];
const hcm = at(list(at(list(at(listener, 'filter_chains'))[0], 'filters'))[0], 'typed_config');
const filters = list(at(hcm, 'http_filters'));
const filterNamed = (name: string) => filters.find((f) => at(f, 'name') === name);
const extProc = at(filterNamed('envoy.filters.http.ext_proc'), 'typed_config');
const clusters = list(at(config, 'static_resources', 'clusters'));
const clusterNamed = (name: unknown) => clusters.find((c) => at(c, 'name') === name);
const route = list(at(list(at(hcm, 'route_config', 'virtual_hosts'))[0], 'routes'))[0];

describe('deploy/envoy/envoy.yaml', () => {
  it('listens on 8080 with the HTTP connection manager', () => {
    expect(at(listener, 'address', 'socket_address', 'port_value')).toBe(8080);
    expect(at(hcm, '@type')).toBe('type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager');
  });

  it('runs ext_proc first and the router last', () => {
    expect(filters.map((f) => at(f, 'name'))).toEqual(['envoy.filters.http.ext_proc', 'envoy.filters.http.header_to_metadata', 'envoy.filters.http.router']);
    expect(at(extProc, '@type')).toBe('type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor');
    expect(at(filterNamed('envoy.filters.http.router'), 'typed_config', '@type')).toBe('type.googleapis.com/envoy.extensions.filters.http.router.v3.Router');
  });

  it('streams both bodies full duplex, sends headers and trailers, and never lets requests skip the EPP', () => {
    expect(at(extProc, 'processing_mode')).toEqual({
      request_header_mode: 'SEND',
      response_header_mode: 'SEND',
      request_body_mode: 'FULL_DUPLEX_STREAMED',
      response_body_mode: 'FULL_DUPLEX_STREAMED',
      request_trailer_mode: 'SEND',
      response_trailer_mode: 'SEND',
    });
    expect(at(extProc, 'failure_mode_allow')).toBe(false);
    expect(at(extProc, 'allow_mode_override')).toBe(false);
    // Envoy caps message_timeout at 3600 s; the EPP may hold headers until the body is whole.
    expect(seconds(at(extProc, 'message_timeout'))).toBeGreaterThanOrEqual(60);
    expect(seconds(at(extProc, 'message_timeout'))).toBeLessThanOrEqual(3600);
    expect(seconds(at(extProc, 'grpc_service', 'timeout'))).toBe(10);
  });

  it('exchanges envoy.lb metadata with the EPP and forwards the subset hint', () => {
    expect(at(extProc, 'metadata_options', 'receiving_namespaces', 'untyped')).toContain(LB_NAMESPACE);
    expect(at(extProc, 'metadata_options', 'forwarding_namespaces', 'untyped')).toEqual(expect.arrayContaining(['envoy.lb.subset_hint', LB_NAMESPACE]));
  });

  it('tells the EPP which endpoint served, in envoy.lb metadata', () => {
    const added = list(at(route, 'response_headers_to_add'))[0];
    expect(at(added, 'header')).toEqual({ key: SERVED_KEY, value: '%UPSTREAM_HOST%' });
    const rule = list(at(filterNamed('envoy.filters.http.header_to_metadata'), 'typed_config', 'response_rules'))[0];
    expect(at(rule, 'header')).toBe(SERVED_KEY);
    expect(at(rule, 'on_header_present')).toMatchObject({ metadata_namespace: LB_NAMESPACE, key: SERVED_KEY });
    expect(at(rule, 'remove')).toBe(true);
  });

  it('talks to the EPP at epp:9002 over HTTP/2 on a gRPC-health-checked cluster', () => {
    const epp = clusterNamed(at(extProc, 'grpc_service', 'envoy_grpc', 'cluster_name'));
    expect(at(epp, 'name')).toBe('epp');
    const address = at(list(at(list(at(epp, 'load_assignment', 'endpoints'))[0], 'lb_endpoints'))[0], 'endpoint', 'address', 'socket_address');
    expect(address).toEqual({ address: 'epp', port_value: 9002 });
    const options = at(epp, 'typed_extension_protocol_options', 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions');
    expect(at(options, '@type')).toBe('type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions');
    expect(at(options, 'explicit_http_config', 'http2_protocol_options')).toEqual({});
    expect(at(list(at(epp, 'health_checks'))[0], 'grpc_health_check', 'service_name')).toBe('envoy.service.ext_proc.v3.ExternalProcessor');
  });

  it('spreads ext_proc streams over every EPP replica the Service name resolves to, and ejects one that fails to connect', () => {
    const epp = clusterNamed('epp');
    // STRICT_DNS keeps every address the name resolves to (a headless Service: one per replica).
    expect(at(epp, 'type')).toBe('STRICT_DNS');
    expect(at(epp, 'lb_policy')).toBe('ROUND_ROBIN');
    // What envoy-sim reproduces: a locally originated failure (connect failure, reset) ejects at once.
    expect(at(epp, 'outlier_detection')).toMatchObject({
      split_external_local_origin_errors: true,
      consecutive_local_origin_failure: 1,
      enforcing_consecutive_local_origin_failure: 100,
      max_ejection_percent: 100,
    });
    expect(seconds(at(epp, 'outlier_detection', 'base_ejection_time'))).toBeGreaterThan(0);
  });

  it('retries an ext_proc stream on another replica when it cannot connect or is refused before any answer', () => {
    const retry = at(extProc, 'grpc_service', 'retry_policy');
    const conditions = String(at(retry, 'retry_on')).split(',');
    expect(conditions).toEqual(expect.arrayContaining(['connect-failure', 'unavailable']));
    // The conditions envoy-sim's extProcRetryOn knows, so the simulator can be run with the same.
    expect(conditions.every((c) => ['connect-failure', 'reset', 'unavailable'].includes(c))).toBe(true);
    expect(Number(at(retry, 'num_retries'))).toBeGreaterThanOrEqual(1);
    // Unset, Envoy waits 1 s before a retry (core RetryPolicy's default base interval).
    expect(seconds(at(retry, 'retry_back_off', 'base_interval'))).toBeLessThan(1);
    const predicate = list(at(retry, 'retry_host_predicate'))[0];
    expect(at(predicate, 'name')).toBe('envoy.retry_host_predicates.previous_hosts');
    expect(at(predicate, 'typed_config', '@type')).toBe('type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate');
  });

  it('routes everything to an ORIGINAL_DST cluster that reads the destination header', () => {
    const target = clusterNamed(at(route, 'route', 'cluster'));
    expect(at(target, 'type')).toBe('ORIGINAL_DST');
    expect(at(target, 'lb_policy')).toBe('CLUSTER_PROVIDED');
    expect(at(target, 'original_dst_lb_config')).toEqual({ use_http_header: true, http_header_name: DESTINATION_HEADER });
    expect(at(route, 'match')).toEqual({ prefix: '/' });
  });
});
