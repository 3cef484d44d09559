import type { GrpcClientTls } from '@kvix/proto';
import type { IncomingHttpHeaders } from 'node:http';
import { parseEndpoint, type Endpoint } from './destination.js';
import { EnvoySimError } from './errors.js';
import type { JsonObject } from './json-struct.js';
import { EXT_PROC_RETRY_ON, type ExtProcRetryOn } from './processor-failure.js';

/** `filter_metadata`: namespace → fields, e.g. `{ "envoy.lb.subset_hint": { "x-gateway-destination-endpoint-subset": ["10.0.0.7:8000"] } }`. */
export type MetadataContext = Record<string, JsonObject>;

/** What a per-request `metadataContext` function is told about the request. */
export interface RequestInfo {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
}

export interface EnvoySimOptions {
  /**
   * The hosts of the ext_proc cluster, as gRPC targets (`host:port`), plaintext: each request's
   * `Process` stream goes to one of them, round robin over those not ejected. Give this or
   * `extProcTarget`.
   */
  extProcTargets?: readonly string[];
  /** A single ext_proc host: the same as `extProcTargets: [extProcTarget]`. */
  extProcTarget?: string;
  /**
   * `retry_on` of the grpc_service `retry_policy`: the failures, before the processor has sent
   * anything back, after which the stream is opened again on another host with everything sent
   * so far. Default `['connect-failure', 'unavailable']`; `[]` disables retries.
   */
  extProcRetryOn?: readonly ExtProcRetryOn[];
  /** `num_retries` of that policy; default (and at most) one per other host. */
  extProcNumRetries?: number;
  /**
   * How long outlier detection keeps an ext_proc host out of the rotation after a failed connect
   * or a reset (`base_ejection_time`); default 5 s, 0 never ejects.
   */
  extProcEjectionMs?: number;
  /** Listen address; default 127.0.0.1. */
  host?: string;
  /** Listen port; default 0 (any free port, see `EnvoySim.port`). */
  port?: number;
  /**
   * How long the processor may stay silent once it has everything it needs to answer (the
   * request or response headers and the whole body); then Envoy answers 504. Default 10 s.
   */
  messageTimeoutMs?: number;
  /** Largest body chunk sent to the processor; default 16 KiB, the size Envoy's buffers slice at. */
  chunkSize?: number;
  /** `metadata_context.filter_metadata` sent with the request headers (the subset hint, typically). */
  metadataContext?: MetadataContext | ((request: RequestInfo) => MetadataContext | undefined);
  /** Envoy's `failure_mode_allow`: a processor that fails or times out is skipped instead of answered 500/504. */
  failureModeAllow?: boolean;
  /**
   * The pool of model servers (`host:port` each), the `vllm_pool` cluster of deploy/envoy/envoy.yaml:
   * the processor's envoy.lb list is walked in order over its hosts (override_host), and a request
   * the processor did not route (it closed the stream before answering, or failed under
   * `failureModeAllow`: FailOpen) goes to them round robin. Without it the cluster is ORIGINAL_DST:
   * the header's one address, and no route at all without it (503).
   */
  defaultUpstream?: string | readonly string[];
  /** Upstream connect timeout; default 5 s (Envoy's cluster `connect_timeout` default). */
  connectTimeoutMs?: number;
  /** TLS to the ext_proc servers (the CA, and a client certificate for mutual TLS); plaintext without. */
  extProcTls?: GrpcClientTls;
  /**
   * The route's `num_retries`: endpoints tried after the first when a connection fails or is reset
   * before the response headers; default 2, as deploy/envoy/envoy.yaml.
   */
  upstreamRetries?: number;
  /** Add `x-envoy-sim-upstream: <endpoint that served>` to responses; default true. */
  upstreamHeader?: boolean;
}

export interface ResolvedOptions {
  extProcTargets: string[];
  extProcRetryOn: ReadonlySet<ExtProcRetryOn>;
  extProcNumRetries: number;
  extProcEjectionMs: number;
  extProcTls: GrpcClientTls | undefined;
  host: string;
  port: number;
  messageTimeoutMs: number;
  chunkSize: number;
  metadataContext: (request: RequestInfo) => MetadataContext | undefined;
  failureModeAllow: boolean;
  defaultUpstreams: Endpoint[];
  connectTimeoutMs: number;
  upstreamRetries: number;
  upstreamHeader: boolean;
}

function positive(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isFinite(v) || v <= 0) throw new EnvoySimError('INVALID_OPTIONS', `${name} must be a positive number, got ${String(value)}`);
  return v;
}

function count(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < 0) throw new EnvoySimError('INVALID_OPTIONS', `${name} must be a whole number >= 0, got ${String(value)}`);
  return v;
}

function extProcTargets(options: EnvoySimOptions): string[] {
  if (options.extProcTarget !== undefined && options.extProcTargets !== undefined) {
    throw new EnvoySimError('INVALID_OPTIONS', 'give extProcTarget or extProcTargets, not both');
  }
  const targets = options.extProcTargets ?? (options.extProcTarget !== undefined ? [options.extProcTarget] : []);
  if (!Array.isArray(targets) || targets.length === 0 || targets.some((t) => typeof t !== 'string' || t.trim() === '')) {
    throw new EnvoySimError('INVALID_OPTIONS', 'extProcTargets (host:port of each ext_proc server) is required');
  }
  const trimmed = targets.map((t: string) => t.trim());
  if (new Set(trimmed).size !== trimmed.length) throw new EnvoySimError('INVALID_OPTIONS', `extProcTargets has duplicates: ${trimmed.join(', ')}`);
  return trimmed;
}

function retryOn(value: readonly ExtProcRetryOn[] | undefined): ReadonlySet<ExtProcRetryOn> {
  const list = value ?? ['connect-failure', 'unavailable'];
  for (const condition of list) {
    if (!EXT_PROC_RETRY_ON.includes(condition)) {
      throw new EnvoySimError('INVALID_OPTIONS', `extProcRetryOn: unknown condition ${JSON.stringify(condition)} (known: ${EXT_PROC_RETRY_ON.join(', ')})`);
    }
  }
  return new Set(list);
}

function defaultUpstreams(value: string | readonly string[] | undefined): Endpoint[] {
  if (value === undefined) return [];
  const list = typeof value === 'string' ? [value] : value;
  return list.map((text) => {
    const endpoint = typeof text === 'string' ? parseEndpoint(text) : undefined;
    if (!endpoint) throw new EnvoySimError('INVALID_OPTIONS', `defaultUpstream entries must be host:port, got ${String(text)}`);
    return endpoint;
  });
}

/** @throws EnvoySimError INVALID_OPTIONS */
export function resolveOptions(options: EnvoySimOptions): ResolvedOptions {
  const targets = extProcTargets(options);
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new EnvoySimError('INVALID_OPTIONS', `port must be 0..65535, got ${port}`);
  const metadata = options.metadataContext;
  return {
    extProcTargets: targets,
    extProcRetryOn: retryOn(options.extProcRetryOn),
    // A retry never goes back to a host already tried (the previous_hosts predicate).
    extProcNumRetries: Math.min(count('extProcNumRetries', options.extProcNumRetries, targets.length - 1), targets.length - 1),
    extProcEjectionMs: count('extProcEjectionMs', options.extProcEjectionMs, 5_000),
    extProcTls: options.extProcTls,
    host: options.host ?? '127.0.0.1',
    port,
    messageTimeoutMs: positive('messageTimeoutMs', options.messageTimeoutMs, 10_000),
    chunkSize: Math.floor(positive('chunkSize', options.chunkSize, 16 * 1024)),
    metadataContext: typeof metadata === 'function' ? metadata : () => metadata,
    failureModeAllow: options.failureModeAllow ?? false,
    defaultUpstreams: defaultUpstreams(options.defaultUpstream),
    connectTimeoutMs: positive('connectTimeoutMs', options.connectTimeoutMs, 5_000),
    upstreamRetries: count('upstreamRetries', options.upstreamRetries, 2),
    upstreamHeader: options.upstreamHeader ?? true,
  };
}
