import type { IncomingHttpHeaders } from 'node:http';
import { parseEndpoint, type Endpoint } from './destination.js';
import { EnvoySimError } from './errors.js';
import type { JsonObject } from './json-struct.js';

/** `filter_metadata`: namespace → fields, e.g. `{ "envoy.lb.subset_hint": { "x-gateway-destination-endpoint-subset": ["10.0.0.7:8000"] } }`. */
export type MetadataContext = Record<string, JsonObject>;

/** What a per-request `metadataContext` function is told about the request. */
export interface RequestInfo {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
}

export interface EnvoySimOptions {
  /** The ext_proc server, as a gRPC target (`host:port`), plaintext. */
  extProcTarget: string;
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
   * `host:port` to forward to when the processor is out of the picture (closed the stream before
   * answering, or skipped under `failureModeAllow`). Without it there is no route: 503.
   */
  defaultUpstream?: string;
  /** Upstream connect timeout; default 5 s (Envoy's cluster `connect_timeout` default). */
  connectTimeoutMs?: number;
  /** Add `x-envoy-sim-upstream: <endpoint that served>` to responses; default true. */
  upstreamHeader?: boolean;
}

export interface ResolvedOptions {
  extProcTarget: string;
  host: string;
  port: number;
  messageTimeoutMs: number;
  chunkSize: number;
  metadataContext: (request: RequestInfo) => MetadataContext | undefined;
  failureModeAllow: boolean;
  defaultUpstream: Endpoint | undefined;
  connectTimeoutMs: number;
  upstreamHeader: boolean;
}

function positive(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isFinite(v) || v <= 0) throw new EnvoySimError('INVALID_OPTIONS', `${name} must be a positive number, got ${String(value)}`);
  return v;
}

/** @throws EnvoySimError INVALID_OPTIONS */
export function resolveOptions(options: EnvoySimOptions): ResolvedOptions {
  if (typeof options.extProcTarget !== 'string' || options.extProcTarget === '') {
    throw new EnvoySimError('INVALID_OPTIONS', 'extProcTarget (host:port of the ext_proc server) is required');
  }
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new EnvoySimError('INVALID_OPTIONS', `port must be 0..65535, got ${port}`);
  let defaultUpstream: Endpoint | undefined;
  if (options.defaultUpstream !== undefined) {
    defaultUpstream = parseEndpoint(options.defaultUpstream);
    if (!defaultUpstream) throw new EnvoySimError('INVALID_OPTIONS', `defaultUpstream must be host:port, got ${options.defaultUpstream}`);
  }
  const metadata = options.metadataContext;
  return {
    extProcTarget: options.extProcTarget,
    host: options.host ?? '127.0.0.1',
    port,
    messageTimeoutMs: positive('messageTimeoutMs', options.messageTimeoutMs, 10_000),
    chunkSize: Math.floor(positive('chunkSize', options.chunkSize, 16 * 1024)),
    metadataContext: typeof metadata === 'function' ? metadata : () => metadata,
    failureModeAllow: options.failureModeAllow ?? false,
    defaultUpstream,
    connectTimeoutMs: positive('connectTimeoutMs', options.connectTimeoutMs, 5_000),
    upstreamHeader: options.upstreamHeader ?? true,
  };
}
