import { once } from 'node:events';
import { createServer, request, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server as GrpcServer, ServerCredentials, status as GrpcStatus, type ServerDuplexStream } from '@grpc/grpc-js';
import { loadExtProc, type HeaderValue__Output, type ProcessingRequest__Output, type ProcessingResponse } from '@kvix/proto';
import type { EnvoySim, ExchangeReport } from '../src/index.js';

// ---- a tiny ext_proc server -----------------------------------------------------------------------

/** What the test processor saw on one stream. */
export interface SeenStream {
  messages: ProcessingRequest__Output[];
  /** Set when the proxy half-closed the stream. */
  halfClosed: boolean;
}

/** How the test processor behaves; every hook is optional. */
export interface ProcessorScript {
  /** Endpoints for x-gateway-destination-endpoint (a list is joined with commas). */
  endpoints?: string[];
  /** Put the endpoints in dynamic_metadata["envoy.lb"] instead of the header. */
  endpointsInMetadataOnly?: boolean;
  /** Rewrites the request body once whole (model aliasing, say). */
  rewriteRequest?: (body: string) => string;
  /** Rewrites each response chunk as it streams back. */
  rewriteResponseChunk?: (chunk: string) => string;
  /** Answers request headers (deferred until the body is whole) with an immediate response. */
  immediate?: ProcessingResponse;
  /** Ends the stream cleanly on the request headers, without answering. */
  closeOnRequestHeaders?: boolean;
  /** Never answers anything. */
  silent?: boolean;
  /** Answers a header with `value` instead of `raw_value` (a bug Envoy punishes silently). */
  useStringValue?: boolean;
  /** Largest streamed_response chunk the processor sends (the EPP uses 62,000). */
  responseChunkSize?: number;
  /** Answers the request only once this settles (an EPP busy picking), holding the stream open. */
  hold?: Promise<void>;
  /** Ends every stream at once with gRPC status UNAVAILABLE, before answering anything. */
  unavailable?: boolean;
}

export interface TestProcessor {
  target: string;
  streams: SeenStream[];
  /** Kills the server: every open stream is reset (grpc-js `forceShutdown`). */
  close(): Promise<void>;
}

const rawOf = (h: HeaderValue__Output) => (h.rawValue.length > 0 ? h.rawValue.toString('latin1') : h.value);

/** The request headers the proxy sent on a stream, as [key, value] pairs (raw_value read). */
export function headersOf(stream: SeenStream | undefined, which: 'requestHeaders' | 'responseHeaders' = 'requestHeaders'): [string, string][] {
  const message = stream?.messages.find((m) => m.request === which);
  return (message?.[which]?.headers?.headers ?? []).map((h) => [h.key, rawOf(h)]);
}

function streamed(kind: 'requestBody' | 'responseBody', body: Buffer, endOfStream: boolean): ProcessingResponse {
  return { [kind]: { response: { bodyMutation: { streamedResponse: { body, endOfStream } } } } };
}

/**
 * An EPP in miniature, written the way the GIE protocol asks: it buffers the request body, then
 * answers the deferred request headers with the endpoint (header and `envoy.lb` metadata), then
 * streams the (rewritten) body back; response chunks are forwarded as they come.
 */
export async function startProcessor(script: ProcessorScript, port = 0): Promise<TestProcessor> {
  const streams: SeenStream[] = [];
  const proto = loadExtProc();
  const server = new GrpcServer();
  server.addService(proto.envoy.service.ext_proc.v3.ExternalProcessor.service, {
    Process(call: ServerDuplexStream<ProcessingRequest__Output, ProcessingResponse>) {
      const seen: SeenStream = { messages: [], halfClosed: false };
      streams.push(seen);
      if (script.unavailable) {
        call.emit('error', { code: GrpcStatus.UNAVAILABLE, details: 'not serving' });
        return;
      }
      let body: Buffer[] = [];
      const afterHold = (answer: () => void) => {
        if (!script.hold) answer();
        else void script.hold.then(() => (call.cancelled ? undefined : answer()));
      };
      const answerHeaders = () => {
        if (script.immediate) {
          call.write(script.immediate);
          call.end();
          return false;
        }
        const list = (script.endpoints ?? []).join(',');
        const setHeaders = script.endpointsInMetadataOnly
          ? []
          : [{ header: script.useStringValue ? { key: 'x-gateway-destination-endpoint', value: list } : { key: 'x-gateway-destination-endpoint', rawValue: Buffer.from(list) } }];
        call.write({
          requestHeaders: { response: { clearRouteCache: true, headerMutation: { setHeaders, removeHeaders: ['x-drop-me'] } } },
          dynamicMetadata: { fields: { 'envoy.lb': { structValue: { fields: { 'x-gateway-destination-endpoint': { stringValue: list } } } } } },
        });
        return true;
      };
      call.on('data', (m: ProcessingRequest__Output) => {
        seen.messages.push(m);
        if (script.silent) return;
        if (m.request === 'requestHeaders') {
          if (script.closeOnRequestHeaders) {
            call.end();
            return;
          }
          if (m.requestHeaders?.endOfStream) afterHold(answerHeaders);
        } else if (m.request === 'requestBody') {
          body.push(m.requestBody?.body ?? Buffer.alloc(0));
          if (!m.requestBody?.endOfStream) return;
          const whole = Buffer.concat(body).toString();
          body = [];
          afterHold(() => {
            if (!answerHeaders()) return;
            const out = Buffer.from(script.rewriteRequest ? script.rewriteRequest(whole) : whole);
            const size = script.responseChunkSize ?? 62_000;
            for (let at = 0; at < out.length || at === 0; at += size) {
              call.write(streamed('requestBody', out.subarray(at, at + size), at + size >= out.length));
              if (out.length === 0) break;
            }
          });
        } else if (m.request === 'responseHeaders') {
          call.write({ responseHeaders: { response: { headerMutation: { setHeaders: [{ header: { key: 'x-processed', rawValue: Buffer.from('yes') } }] } } } });
        } else if (m.request === 'responseBody') {
          const chunk = m.responseBody?.body ?? Buffer.alloc(0);
          const text = script.rewriteResponseChunk ? script.rewriteResponseChunk(chunk.toString()) : chunk.toString();
          call.write(streamed('responseBody', Buffer.from(text), m.responseBody?.endOfStream ?? false));
        } else if (m.request === 'responseTrailers') {
          call.write({ responseTrailers: {} });
        }
      });
      call.on('end', () => {
        seen.halfClosed = true;
        call.end();
      });
      call.on('error', () => {});
    },
  });
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    target: `127.0.0.1:${bound}`,
    streams,
    close: () =>
      new Promise<void>((resolve) => {
        server.forceShutdown();
        resolve();
      }),
  };
}

// ---- upstreams and a client -----------------------------------------------------------------------

export interface SeenUpstreamRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface TestUpstream {
  address: string;
  requests: SeenUpstreamRequest[];
  close(): Promise<void>;
}

/** An HTTP upstream; `handle` answers once the request body is whole. */
export async function startUpstream(handle: (req: SeenUpstreamRequest, res: ServerResponse) => void): Promise<TestUpstream> {
  const requests: SeenUpstreamRequest[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() };
      requests.push(seen);
      handle(seen, res);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** An upstream that answers with a JSON echo of what it received. */
export const echoUpstream = () =>
  startUpstream((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ got: req.body, path: req.url }));
  });

export interface ClientResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One request to the simulator; resolves with the whole response. */
export function send(sim: EnvoySim, method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<ClientResponse> {
  return new Promise((resolve, reject) => {
    const req = request(`${sim.url}${path}`, { method, headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers } }, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The report of the next exchange the simulator completes. */
export function nextReport(sim: EnvoySim): Promise<ExchangeReport> {
  return once(sim, 'exchange').then(([report]) => report as ExchangeReport);
}
