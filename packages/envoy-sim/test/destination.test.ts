import { describe, expect, it } from 'vitest';
import { destinationsOf, originalDestinationOf, parseEndpoint } from '../src/destination.js';
import { HeaderList } from '../src/header-list.js';

describe('destinationsOf (the override_host policy of deploy/envoy/envoy.yaml)', () => {
  it('walks the envoy.lb metadata list in order, ignoring the header', () => {
    const headers = new HeaderList([['x-gateway-destination-endpoint', '10.0.0.9:8000']]);
    const { endpoints, source } = destinationsOf(headers, { 'envoy.lb': { 'x-gateway-destination-endpoint': '10.0.0.7:8000, 10.0.0.8:8000,10.0.0.7:8000' } });
    expect({ endpoints: endpoints.map((e) => e.address), source }).toEqual({ endpoints: ['10.0.0.7:8000', '10.0.0.8:8000'], source: 'metadata' });
  });

  it('skips entries that are not host:port and reports them', () => {
    const { endpoints, invalid } = destinationsOf(new HeaderList(), { 'envoy.lb': { 'x-gateway-destination-endpoint': 'pod-a,10.0.0.7:99999,[fd00::7]:8000' } });
    expect(endpoints).toEqual([{ address: '[fd00::7]:8000', host: 'fd00::7', port: 8000 }]);
    expect(invalid).toEqual(['pod-a', '10.0.0.7:99999']);
  });
});

describe('originalDestinationOf (an ORIGINAL_DST cluster)', () => {
  it('reads the first header occurrence only', () => {
    const headers = new HeaderList([
      ['x-gateway-destination-endpoint', '10.0.0.7:8000'],
      ['x-gateway-destination-endpoint', '10.0.0.8:8000'],
    ]);
    expect(originalDestinationOf(headers).endpoints.map((e) => e.address)).toEqual(['10.0.0.7:8000']);
  });

  it('finds no host in a comma-separated list, as Envoy (original_dst_host_invalid, 503)', () => {
    const { endpoints, invalid } = originalDestinationOf(new HeaderList([['x-gateway-destination-endpoint', '10.0.0.7:8000,10.0.0.8:8000']]));
    expect({ endpoints, invalid }).toEqual({ endpoints: [], invalid: ['10.0.0.7:8000,10.0.0.8:8000'] });
  });
});

describe('parseEndpoint', () => {
  it('accepts IPv4, bracketed IPv6 and host names with a port', () => {
    expect(parseEndpoint('10.0.0.7:8000')).toEqual({ address: '10.0.0.7:8000', host: '10.0.0.7', port: 8000 });
    expect(parseEndpoint('[::1]:1')?.host).toBe('::1');
    expect(parseEndpoint('vllm-0.vllm:8000')?.port).toBe(8000);
    expect(parseEndpoint('10.0.0.7')).toBeUndefined();
    expect(parseEndpoint('::1:8000')).toBeUndefined();
    expect(parseEndpoint('10.0.0.7:0')).toBeUndefined();
  });
});
