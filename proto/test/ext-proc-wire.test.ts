import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { httpStatusNumber, loadExtProc, type ProcessingRequest, type ProcessingResponse } from '../src/index.js';

// Golden bytes assembled by tools/vectors/generate_ext_proc_vectors.py from Envoy's field numbers,
// independently of proto/envoy/**: a wrong field number or type there changes the encoding.
interface GoldenCase {
  name: string;
  message: 'ProcessingRequest' | 'ProcessingResponse';
  hex: string;
}
const golden = JSON.parse(readFileSync(new URL('./fixtures/ext-proc-golden.json', import.meta.url), 'utf8')) as { cases: GoldenCase[] };
const goldenHex = (name: string): string => {
  const found = golden.cases.find((c) => c.name === name);
  if (!found) throw new Error(`no golden case ${name}`);
  return found.hex;
};

const processMethod = loadExtProc().envoy.service.ext_proc.v3.ExternalProcessor.service.Process;
const encodeResponse = (m: ProcessingResponse): string => processMethod.responseSerialize(m).toString('hex');
const encodeRequest = (m: ProcessingRequest): string => processMethod.requestSerialize(m).toString('hex');
const decodeResponse = (hex: string) => processMethod.responseDeserialize(Buffer.from(hex, 'hex'));
const decodeRequest = (hex: string) => processMethod.requestDeserialize(Buffer.from(hex, 'hex'));

const ENDPOINTS = '10.0.0.7:8000,10.0.0.8:8000';
const str = (stringValue: string) => ({ stringValue });
const lbMetadata = { fields: { 'envoy.lb': { structValue: { fields: { 'x-gateway-destination-endpoint': str(ENDPOINTS) } } } } };
const raw = (key: string, value: string) => ({ key, rawValue: Buffer.from(value) });

// Each message sets only non-default values: proto3 encoders (Envoy's, Python's) omit defaults.
const responses: Record<string, ProcessingResponse> = {
  'response-request-body-streamed': {
    requestBody: { response: { bodyMutation: { streamedResponse: { body: Buffer.from('{"model":"m","prompt":"hello"}'), endOfStream: true } } } },
    dynamicMetadata: lbMetadata,
  },
  'response-request-headers': {
    requestHeaders: {
      response: {
        headerMutation: {
          setHeaders: [
            { header: raw('x-gateway-destination-endpoint', ENDPOINTS), appendAction: 'OVERWRITE_IF_EXISTS_OR_ADD' },
            { header: raw('content-length', '30') },
          ],
          removeHeaders: ['x-remove-me'],
        },
        clearRouteCache: true,
      },
    },
    dynamicMetadata: lbMetadata,
  },
  'response-immediate': {
    immediateResponse: {
      status: { code: 'ServiceUnavailable' },
      headers: { setHeaders: [{ header: raw('x-llm-d-request-dropped-reason', 'rejected-saturated') }] },
      body: Buffer.from('no endpoint'),
      grpcStatus: { status: 14 },
      details: 'no_eligible_endpoint',
    },
  },
  'response-response-body': {
    responseBody: { response: { status: 'CONTINUE_AND_REPLACE', bodyMutation: { streamedResponse: { body: Buffer.from('data: {}\n\n') } } } },
  },
  'response-response-trailers': {
    responseTrailers: { headerMutation: { setHeaders: [{ header: raw('x-usage', '12') }] } },
  },
  'response-mode-override': {
    responseHeaders: {},
    modeOverride: {
      requestHeaderMode: 'SEND',
      responseHeaderMode: 'SKIP',
      requestBodyMode: 'FULL_DUPLEX_STREAMED',
      responseBodyMode: 'FULL_DUPLEX_STREAMED',
      requestTrailerMode: 'SEND',
      responseTrailerMode: 'SEND',
    },
    overrideMessageTimeout: { seconds: 2, nanos: 500_000_000 },
  },
};

const requests: Record<string, ProcessingRequest> = {
  'request-request-headers': {
    requestHeaders: {
      headers: {
        headers: [raw(':method', 'POST'), raw(':path', '/v1/completions'), raw(':authority', 'gw'), raw(':scheme', 'http'), raw('content-type', 'application/json')],
      },
    },
    metadataContext: {
      filterMetadata: {
        'envoy.lb.subset_hint': {
          fields: { 'x-gateway-destination-endpoint-subset': { listValue: { values: [str('10.0.0.7:8000'), str('10.0.0.9:8000')] } } },
        },
      },
    },
    protocolConfig: { requestBodyMode: 'FULL_DUPLEX_STREAMED', responseBodyMode: 'FULL_DUPLEX_STREAMED' },
  },
  'request-request-body': { requestBody: { body: Buffer.from('{"model":"m"}'), endOfStream: true } },
  'request-response-headers': {
    responseHeaders: { headers: { headers: [raw(':status', '200'), raw('content-type', 'text/event-stream')] } },
    metadataContext: { filterMetadata: { 'envoy.lb': { fields: { 'x-gateway-destination-endpoint-served': str('10.0.0.7:8000') } } } },
    attributes: { 'envoy.filters.http.ext_proc': { fields: { 'upstream.address': str('10.0.0.7:8000') } } },
  },
  'request-response-body': { responseBody: { body: Buffer.from('data: [DONE]\n\n') } },
  'request-response-trailers': { responseTrailers: { trailers: { headers: [raw('grpc-status', '0')] } } },
  'request-observability': { requestTrailers: {}, observabilityMode: true },
};

describe('ext_proc wire format (Envoy field numbers)', () => {
  it('covers every golden case', () => {
    expect(Object.keys({ ...responses, ...requests }).sort()).toEqual(golden.cases.map((c) => c.name).sort());
  });

  for (const [name, message] of Object.entries(responses)) {
    it(`encodes ProcessingResponse ${name} byte for byte`, () => {
      expect(encodeResponse(message)).toBe(goldenHex(name));
    });
  }
  for (const [name, message] of Object.entries(requests)) {
    it(`encodes ProcessingRequest ${name} byte for byte`, () => {
      expect(encodeRequest(message)).toBe(goldenHex(name));
    });
  }

  it('decodes a FULL_DUPLEX streamed body answer with its dynamic metadata', () => {
    const m = decodeResponse(goldenHex('response-request-body-streamed'));
    expect(m.response).toBe('requestBody');
    const mutation = m.requestBody?.response?.bodyMutation;
    expect(mutation?.mutation).toBe('streamedResponse');
    expect(mutation?.streamedResponse?.body.toString()).toBe('{"model":"m","prompt":"hello"}');
    expect(mutation?.streamedResponse?.endOfStream).toBe(true);
    const lb = m.dynamicMetadata?.fields['envoy.lb']?.structValue?.fields['x-gateway-destination-endpoint'];
    expect(lb?.stringValue).toBe(ENDPOINTS);
  });

  it('decodes the headers answer, the local reply and the request Envoy sends', () => {
    const headers = decodeResponse(goldenHex('response-request-headers')).requestHeaders?.response;
    expect(headers?.clearRouteCache).toBe(true);
    expect(headers?.headerMutation?.setHeaders[0]?.header?.rawValue.toString()).toBe(ENDPOINTS);
    expect(headers?.headerMutation?.setHeaders[0]?.appendAction).toBe('OVERWRITE_IF_EXISTS_OR_ADD');
    expect(headers?.headerMutation?.removeHeaders).toEqual(['x-remove-me']);

    const immediate = decodeResponse(goldenHex('response-immediate')).immediateResponse;
    expect(immediate?.status?.code).toBe('ServiceUnavailable');
    expect(httpStatusNumber(immediate?.status?.code ?? 0)).toBe(503);
    expect(immediate?.body.toString()).toBe('no endpoint');

    const request = decodeRequest(goldenHex('request-request-headers'));
    expect(request.request).toBe('requestHeaders');
    expect(request.requestHeaders?.headers?.headers.map((h) => [h.key, h.rawValue.toString()])).toContainEqual([':path', '/v1/completions']);
    const subset = request.metadataContext?.filterMetadata['envoy.lb.subset_hint']?.fields['x-gateway-destination-endpoint-subset'];
    expect(subset?.listValue?.values.map((v) => v.stringValue)).toEqual(['10.0.0.7:8000', '10.0.0.9:8000']);
    expect(request.protocolConfig?.requestBodyMode).toBe('FULL_DUPLEX_STREAMED');
  });
});

describe('httpStatusNumber', () => {
  it('maps Envoy status names to HTTP codes and passes numbers through', () => {
    expect(httpStatusNumber('TooManyRequests')).toBe(429);
    expect(httpStatusNumber('GatewayTimeout')).toBe(504);
    expect(httpStatusNumber(418)).toBe(418);
    expect(httpStatusNumber('NoSuchStatus')).toBe(0);
  });

  it('decodes a status the enum does not list as its number', () => {
    const m = decodeResponse(encodeResponse({ immediateResponse: { status: { code: 418 as unknown as 'OK' } } }));
    expect(httpStatusNumber(m.immediateResponse?.status?.code ?? 0)).toBe(418);
  });
});

describe('loaders', () => {
  it('loads the well-known types the Envoy protos import from protobufjs', () => {
    const g = loadExtProc().google.protobuf;
    expect(g.Struct.format).toContain('Protocol Buffer 3');
    expect(g.Duration.format).toContain('Protocol Buffer 3');
    expect(g.Any.format).toContain('Protocol Buffer 3');
  });
});
