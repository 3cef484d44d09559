import { describe, expect, it } from 'vitest';
import { destinationsOf, parseEndpoint } from '../src/destination.js';
import { HeaderList } from '../src/header-list.js';

describe('destinationsOf', () => {
  it('takes the ordered, comma-separated header list, then the metadata fallback key', () => {
    const headers = new HeaderList([['x-gateway-destination-endpoint', '10.0.0.7:8000, 10.0.0.8:8000']]);
    const { endpoints } = destinationsOf(headers, { 'envoy.lb': { 'x-gateway-destination-endpoint-fallback': '10.0.0.9:8000,10.0.0.7:8000' } });
    expect(endpoints.map((e) => e.address)).toEqual(['10.0.0.7:8000', '10.0.0.8:8000', '10.0.0.9:8000']);
  });

  it('reads the first header occurrence only, as ORIGINAL_DST does', () => {
    const headers = new HeaderList([
      ['x-gateway-destination-endpoint', '10.0.0.7:8000'],
      ['x-gateway-destination-endpoint', '10.0.0.8:8000'],
    ]);
    expect(destinationsOf(headers, {}).endpoints.map((e) => e.address)).toEqual(['10.0.0.7:8000']);
  });

  it('falls back to dynamic_metadata["envoy.lb"] when there is no header', () => {
    const { endpoints } = destinationsOf(new HeaderList(), { 'envoy.lb': { 'x-gateway-destination-endpoint': '10.0.0.7:8000' } });
    expect(endpoints.map((e) => e.address)).toEqual(['10.0.0.7:8000']);
  });

  it('skips entries that are not host:port and reports them', () => {
    const headers = new HeaderList([['x-gateway-destination-endpoint', 'pod-a,10.0.0.7:99999,[fd00::7]:8000']]);
    const { endpoints, invalid } = destinationsOf(headers, {});
    expect(endpoints).toEqual([{ address: '[fd00::7]:8000', host: 'fd00::7', port: 8000 }]);
    expect(invalid).toEqual(['pod-a', '10.0.0.7:99999']);
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
