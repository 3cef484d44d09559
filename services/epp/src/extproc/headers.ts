import type { HeaderMap__Output, HeaderValueOption, Metadata__Output, Struct, Value__Output } from '@kvix/proto';

/** Lower-case header names → values; Envoy sends values as raw bytes, older proxies as strings. */
export function headerRecord(map: HeaderMap__Output | null | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of map?.headers ?? []) {
    const value = h.rawValue && h.rawValue.length > 0 ? h.rawValue.toString('utf8') : h.value;
    out[h.key.toLowerCase()] = value;
  }
  return out;
}

export function setHeader(key: string, value: string): HeaderValueOption {
  return { header: { key, rawValue: Buffer.from(value) }, appendAction: 'OVERWRITE_IF_EXISTS_OR_ADD' };
}

/** `filter_metadata[namespace][key]` as strings (a string, or a list of strings). */
export function metadataStrings(metadata: Metadata__Output | null | undefined, namespace: string, key: string): string[] | null {
  const value: Value__Output | undefined = metadata?.filterMetadata?.[namespace]?.fields?.[key];
  if (!value) return null;
  if (value.kind === 'stringValue') return (value.stringValue ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (value.kind === 'listValue') return (value.listValue?.values ?? []).flatMap((v) => (v.kind === 'stringValue' && v.stringValue ? [v.stringValue] : []));
  return null;
}

/** `{namespace: {key: value}}` as a google.protobuf.Struct (dynamic metadata). */
export function structOf(namespace: string, key: string, value: string): Struct {
  return { fields: { [namespace]: { structValue: { fields: { [key]: { stringValue: value } } } } } };
}
