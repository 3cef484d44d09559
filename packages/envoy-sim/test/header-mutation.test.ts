import type { HeaderMutation__Output, HeaderValueOption__Output } from '@kvix/proto';
import { describe, expect, it } from 'vitest';
import { EnvoySimError } from '../src/errors.js';
import { HeaderList } from '../src/header-list.js';
import { applyHeaderMutation } from '../src/header-mutation.js';

// Decoded messages carry every field (the loader fills defaults); these helpers do the same.
function set(key: string, raw: string, extra: Partial<HeaderValueOption__Output> = {}): HeaderValueOption__Output {
  return { header: { key, value: '', rawValue: Buffer.from(raw) }, append: null, appendAction: 'APPEND_IF_EXISTS_OR_ADD', keepEmptyValue: false, ...extra };
}
const mutation = (setHeaders: HeaderValueOption__Output[], removeHeaders: string[] = []): HeaderMutation__Output => ({ setHeaders, removeHeaders });

function apply(headers: [string, string][], m: HeaderMutation__Output): { headers: [string, string][]; notes: string[] } {
  const list = new HeaderList(headers);
  const notes: string[] = [];
  applyHeaderMutation(list, m, notes);
  return { headers: list.entries().map(([k, v]) => [k, v]), notes };
}

describe('applyHeaderMutation (Envoy ext_proc semantics)', () => {
  it('overwrites by default: an unset append_action and no `append` mean replace', () => {
    const out = apply([['x-gateway-destination-endpoint', 'client-supplied'], ['a', '1']], mutation([set('x-gateway-destination-endpoint', '10.0.0.7:8000')]));
    expect(out.headers).toEqual([['x-gateway-destination-endpoint', '10.0.0.7:8000'], ['a', '1']]);
  });

  it('appends when the deprecated `append` is true, and follows each append_action', () => {
    const base: [string, string][] = [['x', 'old']];
    expect(apply(base, mutation([set('x', 'new', { append: { value: true } })])).headers).toEqual([['x', 'old'], ['x', 'new']]);
    expect(apply(base, mutation([set('x', 'new', { appendAction: 'ADD_IF_ABSENT' })])).headers).toEqual([['x', 'old']]);
    expect(apply([], mutation([set('x', 'new', { appendAction: 'ADD_IF_ABSENT' })])).headers).toEqual([['x', 'new']]);
    expect(apply(base, mutation([set('x', 'new', { appendAction: 'OVERWRITE_IF_EXISTS' })])).headers).toEqual([['x', 'new']]);
    expect(apply([], mutation([set('x', 'new', { appendAction: 'OVERWRITE_IF_EXISTS' })])).headers).toEqual([]);
    expect(apply(base, mutation([set('x', 'new', { appendAction: 'OVERWRITE_IF_EXISTS_OR_ADD' })])).headers).toEqual([['x', 'new']]);
  });

  it('removes before it sets, and lower-cases names', () => {
    const out = apply([['x-a', '1'], ['x-b', '2']], mutation([set('X-A', 'again')], ['X-A', 'x-b']));
    expect(out.headers).toEqual([['x-a', 'again']]);
  });

  it('skips what the default mutation rules protect, with a note', () => {
    const out = apply(
      [[':authority', 'gw'], [':method', 'POST'], ['host', 'gw']],
      mutation([set(':authority', 'evil'), set('host', 'evil'), set('x-envoy-original-dst-host', '1.2.3.4:80'), set(':path', '/v2')], [':method', 'host']),
    );
    expect(out.headers).toEqual([[':authority', 'gw'], [':method', 'POST'], ['host', 'gw'], [':path', '/v2']]);
    expect(out.notes).toHaveLength(5);
  });

  it('reads raw_value only: a `value`-only header is set empty', () => {
    const out = apply([], mutation([{ ...set('x', ''), header: { key: 'x', value: 'text', rawValue: Buffer.alloc(0) } }]));
    expect(out.headers).toEqual([['x', '']]);
    expect(out.notes[0]).toContain('raw_value');
  });

  it('rejects what Envoy fails the request for', () => {
    const both = { ...set('x', 'raw'), header: { key: 'x', value: 'text', rawValue: Buffer.from('raw') } };
    for (const bad of [mutation([both]), mutation([set('bad name', 'v')]), mutation([set('x', 'a\r\nb')]), mutation([], ['bad name'])]) {
      try {
        apply([], bad);
        expect.unreachable();
      } catch (err) {
        expect(err).toBeInstanceOf(EnvoySimError);
        expect((err as EnvoySimError).code).toBe('MUTATION_REJECTED');
      }
    }
  });
});
