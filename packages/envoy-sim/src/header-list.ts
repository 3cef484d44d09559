import type { HeaderMap } from '@kvix/proto';

/**
 * An ordered multi-map of lower-cased header names, pseudo-headers (`:method`, `:status`, …)
 * included: the shape of Envoy's header map, which keeps repeated headers as separate entries.
 */
export class HeaderList {
  private readonly list: [string, string][];

  constructor(entries: Iterable<readonly [string, string]> = []) {
    this.list = [...entries].map(([k, v]) => [k.toLowerCase(), v]);
  }

  /** From Node's `rawHeaders` ([name, value, name, value, …]). */
  static fromRaw(raw: readonly string[]): HeaderList {
    const out = new HeaderList();
    for (let i = 0; i + 1 < raw.length; i += 2) out.add(raw[i] as string, raw[i + 1] as string);
    return out;
  }

  entries(): readonly (readonly [string, string])[] {
    return this.list;
  }

  /** The first value, which is the one Envoy's ORIGINAL_DST cluster reads. */
  get(name: string): string | undefined {
    const key = name.toLowerCase();
    return this.list.find(([k]) => k === key)?.[1];
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  add(name: string, value: string): void {
    this.list.push([name.toLowerCase(), value]);
  }

  /** Replaces every value of `name` with one, at the position of the first. */
  set(name: string, value: string): void {
    const key = name.toLowerCase();
    const at = this.list.findIndex(([k]) => k === key);
    if (at < 0) {
      this.list.push([key, value]);
      return;
    }
    this.list[at] = [key, value];
    for (let i = this.list.length - 1; i > at; i--) if (this.list[i]?.[0] === key) this.list.splice(i, 1);
  }

  remove(name: string): void {
    const key = name.toLowerCase();
    for (let i = this.list.length - 1; i >= 0; i--) if (this.list[i]?.[0] === key) this.list.splice(i, 1);
  }

  /** As Envoy sends headers to a processor: every value in `raw_value`. */
  toProto(): HeaderMap {
    return { headers: this.list.map(([key, value]) => ({ key, rawValue: Buffer.from(value, 'latin1') })) };
  }

  /** For node:http, pseudo-headers and the listed names left out; repeated headers as arrays. */
  toOutgoing(omit: ReadonlySet<string> = new Set()): Record<string, string | string[]> {
    const out: Record<string, string | string[]> = {};
    for (const [key, value] of this.list) {
      if (key.startsWith(':') || omit.has(key)) continue;
      const prev = out[key];
      out[key] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
    }
    return out;
  }
}

/** Connection-level headers a proxy never forwards (RFC 9110 §7.6.1). */
export const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'upgrade', 'trailer']);
