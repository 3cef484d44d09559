import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { parse } from 'yaml';
import { repoRoot } from './binary.js';
import { EnvoyError } from './errors.js';

/** An Envoy bootstrap configuration as plain data (what `-c file.json` reads). */
export type EnvoyConfig = Record<string, unknown>;

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function objAt(parent: Obj, key: string, what: string): Obj {
  const v = parent[key];
  if (!isObj(v)) throw new EnvoyError('ENVOY_CONFIG_SHAPE', `the Envoy configuration has no ${what}`);
  return v;
}

function listAt(parent: Obj, key: string, what: string): Obj[] {
  const v = parent[key];
  if (!Array.isArray(v) || !v.every(isObj)) throw new EnvoyError('ENVOY_CONFIG_SHAPE', `the Envoy configuration has no ${what}`);
  return v;
}

/** The shipped configuration's path: `deploy/envoy/envoy.yaml` in the repository. */
export function deployConfigPath(root: string = repoRoot()): string {
  return join(root, 'deploy', 'envoy', 'envoy.yaml');
}

/** Reads a YAML (or JSON) Envoy configuration. */
export function readEnvoyConfig(file: string = deployConfigPath()): EnvoyConfig {
  const doc: unknown = parse(readFileSync(file, 'utf8'));
  if (!isObj(doc)) throw new EnvoyError('ENVOY_CONFIG_SHAPE', `${file} is not an Envoy configuration (not a mapping)`);
  return doc;
}

/** `host:port` (IPv6 in brackets) into its parts. */
export function splitHostPort(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(address.trim());
  if (!m) throw new EnvoyError('ENVOY_CONFIG_SHAPE', `"${address}" is not host:port`);
  return { host: (m[1] ?? m[2]) as string, port: Number(m[3]) };
}

function socketAddress(address: string): Obj {
  const { host, port } = splitHostPort(address);
  return { socket_address: { address: host, port_value: port } };
}

export interface LocalEnvoyOptions {
  /** The EPP replicas' ext_proc addresses (cluster `epp`). */
  extProc: readonly string[];
  /** The model servers (cluster `vllm_pool`): what override_host may route to, and FailOpen's round robin. */
  pods: readonly string[];
  /** Where the `inference` listener binds (default 127.0.0.1, port 0: any free port). */
  listen?: { host?: string; port?: number };
  /** Where the admin API binds (default 127.0.0.1, port 0). */
  admin?: { host?: string; port?: number };
}

/**
 * Points a copy of `base` (the shipped configuration, unless given) at local processes: the
 * listener and admin API on loopback, the `epp` and `vllm_pool` clusters on the given addresses
 * (static when they are IP addresses, DNS-resolved otherwise). Everything else is kept as it is,
 * so what runs is the shipped configuration.
 */
export function localEnvoyConfig(options: LocalEnvoyOptions, base: EnvoyConfig = readEnvoyConfig()): EnvoyConfig {
  const config = structuredClone(base);
  const admin = objAt(config, 'admin', 'admin section');
  admin['address'] = socketAddress(`${options.admin?.host ?? '127.0.0.1'}:${options.admin?.port ?? 0}`);
  const resources = objAt(config, 'static_resources', 'static_resources');
  const listener = listAt(resources, 'listeners', 'listeners').find((l) => l['name'] === 'inference');
  if (!listener) throw new EnvoyError('ENVOY_CONFIG_SHAPE', 'the Envoy configuration has no listener named "inference"');
  listener['address'] = socketAddress(`${options.listen?.host ?? '127.0.0.1'}:${options.listen?.port ?? 0}`);
  const clusters = listAt(resources, 'clusters', 'clusters');
  for (const [name, addresses] of [['epp', options.extProc], ['vllm_pool', options.pods]] as const) {
    const cluster = clusters.find((c) => c['name'] === name);
    if (!cluster) throw new EnvoyError('ENVOY_CONFIG_SHAPE', `the Envoy configuration has no cluster named "${name}"`);
    if (addresses.length === 0) throw new EnvoyError('ENVOY_CONFIG_SHAPE', `cluster "${name}" needs at least one address`);
    cluster['load_assignment'] = { cluster_name: name, endpoints: [{ lb_endpoints: addresses.map((a) => ({ endpoint: { address: socketAddress(a) } })) }] };
    if (addresses.every((a) => isIP(splitHostPort(a).host) !== 0)) {
      delete cluster['cluster_type'];
      cluster['type'] = 'STATIC';
    }
  }
  return config;
}

/** Inserts an HTTP filter into the `inference` listener's chain, before the one named `before`. */
export function insertHttpFilter(config: EnvoyConfig, filter: Obj, before = 'envoy.filters.http.ext_proc'): EnvoyConfig {
  const out = structuredClone(config);
  const listener = listAt(objAt(out, 'static_resources', 'static_resources'), 'listeners', 'listeners').find((l) => l['name'] === 'inference');
  const chain = listener ? listAt(listener, 'filter_chains', 'filter chains')[0] : undefined;
  const hcm = chain ? listAt(chain, 'filters', 'network filters').find((f) => f['name'] === 'envoy.filters.network.http_connection_manager') : undefined;
  if (!hcm) throw new EnvoyError('ENVOY_CONFIG_SHAPE', 'the Envoy configuration has no HTTP connection manager on the "inference" listener');
  const filters = listAt(objAt(hcm, 'typed_config', 'HTTP connection manager config'), 'http_filters', 'HTTP filters');
  const at = filters.findIndex((f) => f['name'] === before);
  filters.splice(at < 0 ? 0 : at, 0, filter);
  return out;
}
