import type { HeaderMutation__Output } from '@kvix/proto';
import { EnvoySimError } from './errors.js';
import type { HeaderList } from './header-list.js';

// RFC 9110 token characters; pseudo-headers keep their leading colon.
const HEADER_NAME = /^:?[!#$%&'*+\-.^_`|~0-9a-z]+$/;
const HEADER_VALUE_FORBIDDEN = /[\0\r\n]/;

/**
 * Whether Envoy's default mutation rules (no `mutation_rules` configured) let a processor touch
 * this header: not `host`, `:authority`, `:scheme`, `:method`, nor anything `x-envoy-*`.
 */
function modifiable(name: string): boolean {
  return !(name === 'host' || name === ':authority' || name === ':scheme' || name === ':method' || name.startsWith('x-envoy'));
}

/**
 * Applies a processor's header mutation the way Envoy's ext_proc filter does: removals first,
 * then sets; only `raw_value` is read (a `value`-only header is set empty, since Envoy ignores
 * `value`); both set is an error; an unset `append_action` falls back to the deprecated `append`,
 * whose absence means overwrite. Disallowed headers are skipped, not failed. Every deviation a
 * processor author would want to know about is appended to `notes`.
 * @throws EnvoySimError MUTATION_REJECTED where Envoy fails the request (it answers 500).
 */
export function applyHeaderMutation(headers: HeaderList, mutation: HeaderMutation__Output, notes: string[]): void {
  for (const raw of mutation.removeHeaders) {
    const name = raw.toLowerCase();
    if (!HEADER_NAME.test(name)) throw new EnvoySimError('MUTATION_REJECTED', `remove_headers: invalid header name ${JSON.stringify(raw)}`);
    if (name.startsWith(':') || !modifiable(name)) {
      notes.push(`remove_headers ${name} ignored: Envoy does not let a processor remove it`);
      continue;
    }
    headers.remove(name);
  }

  for (const option of mutation.setHeaders) {
    const header = option.header;
    if (!header) continue;
    const name = header.key.toLowerCase();
    if (header.value !== '' && header.rawValue.length > 0) {
      throw new EnvoySimError('MUTATION_REJECTED', `set_headers ${name}: only one of value and raw_value may be set`);
    }
    if (header.value !== '') notes.push(`set_headers ${name}: value ignored, Envoy reads raw_value only (the header is set empty)`);
    const value = header.rawValue.toString('latin1');
    if (!HEADER_NAME.test(name) || HEADER_VALUE_FORBIDDEN.test(value)) {
      throw new EnvoySimError('MUTATION_REJECTED', `set_headers: invalid header ${JSON.stringify(header.key)}`);
    }
    if (!modifiable(name)) {
      notes.push(`set_headers ${name} ignored: Envoy does not let a processor modify it`);
      continue;
    }
    const exists = headers.has(name);
    switch (option.appendAction) {
      case 'ADD_IF_ABSENT':
        if (!exists) headers.add(name, value);
        break;
      case 'OVERWRITE_IF_EXISTS_OR_ADD':
        headers.set(name, value);
        break;
      case 'OVERWRITE_IF_EXISTS':
        if (exists) headers.set(name, value);
        break;
      default:
        if (option.append?.value === true) headers.add(name, value);
        else headers.set(name, value);
    }
  }
}
