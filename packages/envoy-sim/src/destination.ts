import type { HeaderList } from './header-list.js';
import type { JsonObject, JsonValue } from './json-struct.js';

/** The header (and `envoy.lb` metadata key) the GIE protocol uses for the picked endpoint(s). */
export const DESTINATION_HEADER = 'x-gateway-destination-endpoint';
/** Where the proxy tells the EPP which endpoint actually served (response path). */
export const SERVED_KEY = 'x-gateway-destination-endpoint-served';
export const LB_NAMESPACE = 'envoy.lb';

export interface Endpoint {
  /** As written by the processor, e.g. `10.0.0.7:8000` or `[fd00::7]:8000`. */
  address: string;
  host: string;
  port: number;
}

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):(\d{1,5})$/;

/** One `host:port` (IPv6 in brackets), or undefined when it is not one. */
export function parseEndpoint(text: string): Endpoint | undefined {
  const match = HOST_PORT.exec(text.trim());
  if (!match) return undefined;
  const port = Number(match[2]);
  if (port < 1 || port > 65535) return undefined;
  const host = (match[1] as string).replace(/^\[(.*)\]$/, '$1');
  return { address: text.trim(), host, port };
}

function listOf(value: JsonValue | undefined): string[] {
  if (typeof value === 'string') return value.split(',');
  if (Array.isArray(value)) return value.flatMap((v) => (typeof v === 'string' ? v.split(',') : []));
  return [];
}

export interface Destinations {
  /** Valid endpoints, in the order a proxy tries them. */
  endpoints: Endpoint[];
  /** Entries that were not `host:port` and were skipped. */
  invalid: string[];
  /** Where they came from: the envoy.lb metadata list (override_host), the header (ORIGINAL_DST), or neither. */
  source: 'metadata' | 'header' | 'none';
}

/**
 * What an ORIGINAL_DST cluster with `use_http_header` reads: the header's first occurrence as one
 * `ip:port`. Anything else (a list, a name) is no host at all.
 */
export function originalDestinationOf(headers: HeaderList): Destinations {
  const header = headers.get(DESTINATION_HEADER);
  if (header === undefined) return { endpoints: [], invalid: [], source: 'none' };
  const endpoint = parseEndpoint(header);
  return endpoint ? { endpoints: [endpoint], invalid: [], source: 'header' } : { endpoints: [], invalid: [header.trim()], source: 'header' };
}

/**
 * The ordered endpoints to try, as deploy/envoy/envoy.yaml has Envoy choose them: the
 * processor's `envoy.lb` dynamic metadata `x-gateway-destination-endpoint`, a comma-separated
 * list walked in order (the override_host policy); without it, the header's first occurrence as
 * one `ip:port` (an ORIGINAL_DST cluster), where a list is not an address at all (Envoy counts
 * `original_dst_host_invalid` and answers 503).
 */
export function destinationsOf(headers: HeaderList, dynamicMetadata: Readonly<Record<string, JsonObject>>): Destinations {
  const fromMetadata = listOf(dynamicMetadata[LB_NAMESPACE]?.[DESTINATION_HEADER]).map((s) => s.trim()).filter((s) => s !== '');
  const header = headers.get(DESTINATION_HEADER);
  const source = fromMetadata.length > 0 ? 'metadata' : header !== undefined ? 'header' : 'none';
  const candidates = source === 'metadata' ? fromMetadata : header !== undefined ? [header.trim()] : [];
  const endpoints: Endpoint[] = [];
  const invalid: string[] = [];
  for (const candidate of candidates) {
    const endpoint = parseEndpoint(candidate);
    if (!endpoint) invalid.push(candidate);
    else if (!endpoints.some((e) => e.address === endpoint.address)) endpoints.push(endpoint);
  }
  return { endpoints, invalid, source };
}
