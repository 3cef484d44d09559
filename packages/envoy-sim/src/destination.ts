import type { HeaderList } from './header-list.js';
import type { JsonObject, JsonValue } from './json-struct.js';

/** The header (and `envoy.lb` metadata key) the GIE protocol uses for the picked endpoint(s). */
export const DESTINATION_HEADER = 'x-gateway-destination-endpoint';
/** Extra endpoints an EPP may add, tried after the primary list. */
export const FALLBACK_KEY = 'x-gateway-destination-endpoint-fallback';
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
}

/**
 * The ordered endpoints to try: the destination header (first occurrence, as ORIGINAL_DST reads
 * it; a comma-separated list is tried in order), else the same key in the processor's
 * `envoy.lb` dynamic metadata, then the optional fallback key of that namespace.
 */
export function destinationsOf(headers: HeaderList, dynamicMetadata: Readonly<Record<string, JsonObject>>): Destinations {
  const lb = dynamicMetadata[LB_NAMESPACE] ?? {};
  const header = headers.get(DESTINATION_HEADER);
  const primary = header !== undefined ? listOf(header) : listOf(lb[DESTINATION_HEADER]);
  const candidates = [...primary, ...listOf(lb[FALLBACK_KEY])].map((s) => s.trim()).filter((s) => s !== '');
  const endpoints: Endpoint[] = [];
  const invalid: string[] = [];
  for (const candidate of candidates) {
    const endpoint = parseEndpoint(candidate);
    if (!endpoint) invalid.push(candidate);
    else if (!endpoints.some((e) => e.address === endpoint.address)) endpoints.push(endpoint);
  }
  return { endpoints, invalid };
}
