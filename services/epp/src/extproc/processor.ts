import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { ProcessingRequest__Output, ProcessingResponse, StatusCode } from '@kvix/proto';
import type { RequestDirector, ResponseStream, RoutedRequest } from '@kvix/scheduler';
import { RequestTrace } from '@kvix/telemetry';
import type { Logger } from 'pino';
import { headerRecord, metadataStrings, setHeader, structOf } from './headers.js';

/** The header and metadata key proxies route on (Gateway API Inference Extension protocol). */
export const DESTINATION = 'x-gateway-destination-endpoint';
export const DESTINATION_SERVED = 'x-gateway-destination-endpoint-served';
export const SUBSET_NAMESPACE = 'envoy.lb.subset_hint';
export const SUBSET_KEY = 'x-gateway-destination-endpoint-subset';
/** Envoy's limit per streamed body chunk is larger; the protocol keeps each under 62,000 bytes. */
export const MAX_CHUNK = 62_000;

export interface ProcessorOptions {
  director: RequestDirector;
  logger: Logger;
  maxBodyBytes: number;
}

type Stream = ServerDuplexStream<ProcessingRequest__Output, ProcessingResponse>;

/**
 * One HTTP request's ext_proc stream in FULL_DUPLEX_STREAMED mode. Request headers are held
 * (not answered) until the body is complete; then the endpoint is picked and the deferred header
 * answer carries it (header mutation and `envoy.lb` dynamic metadata), followed by the body echoed
 * back (rewritten when aliased) in chunks. The response side is forwarded chunk by chunk as it
 * comes, model names mapped back for aliases.
 */
export class ExchangeProcessor {
  private headers: Record<string, string> = {};
  private subset: string[] | null = null;
  private readonly body: Buffer[] = [];
  private bodyBytes = 0;
  private routed: RoutedRequest | null = null;
  private response: ResponseStream | null = null;
  private responseStatus: number | null = null;
  private done = false;
  /** The request's span (from its headers on): routing, then the call Envoy makes to the pod. */
  private trace: RequestTrace | null = null;

  constructor(
    private readonly stream: Stream,
    private readonly options: ProcessorOptions,
  ) {}

  async onMessage(message: ProcessingRequest__Output): Promise<void> {
    if (this.done) return;
    switch (message.request) {
      case 'requestHeaders': {
        this.headers = headerRecord(message.requestHeaders?.headers);
        this.subset = metadataStrings(message.metadataContext, SUBSET_NAMESPACE, SUBSET_KEY);
        this.trace = RequestTrace.start('ext_proc', this.headers[':method'] ?? 'POST', this.headers[':path'] ?? '/', this.headers);
        if (message.requestHeaders?.endOfStream) await this.route();
        return;
      }
      case 'requestBody': {
        const chunk = message.requestBody!;
        this.bodyBytes += chunk.body.length;
        if (this.bodyBytes > this.options.maxBodyBytes) return this.immediate(413, 'BODY_TOO_LARGE', `request bodies are limited to ${this.options.maxBodyBytes} bytes`, {});
        if (chunk.body.length > 0) this.body.push(chunk.body);
        if (chunk.endOfStream) await this.route();
        return;
      }
      case 'requestTrailers':
        return this.send({ requestTrailers: {} });
      case 'responseHeaders': {
        const headers = headerRecord(message.responseHeaders?.headers);
        this.responseStatus = Number(headers[':status']) || null;
        const served = metadataStrings(message.metadataContext, 'envoy.lb', DESTINATION_SERVED)?.[0];
        const routed = this.routed;
        if (!routed) return this.send({ responseHeaders: {} });
        if (served) routed.served(served);
        this.response = routed.responseStream(headers['content-type'] ?? null);
        const set = Object.entries(routed.responseHeaders()).map(([k, v]) => setHeader(k, v));
        // An alias rewrites the body on the way out: its length is no longer the upstream's.
        const remove = routed.clientModel !== routed.targetModel ? ['content-length'] : [];
        this.send({ responseHeaders: { response: { headerMutation: { setHeaders: set, removeHeaders: remove } } } });
        if (message.responseHeaders?.endOfStream) this.finishResponse();
        return;
      }
      case 'responseBody': {
        const chunk = message.responseBody!;
        const out = this.response ? this.response.push(chunk.body) : chunk.body;
        if (!chunk.endOfStream) return this.sendBody('responseBody', out, false);
        const tail = this.response ? this.response.end() : Buffer.alloc(0);
        this.sendBody('responseBody', Buffer.concat([out, tail]), true);
        this.finishResponse();
        return;
      }
      case 'responseTrailers':
        this.send({ responseTrailers: {} });
        this.finishResponse();
        return;
      default:
        return;
    }
  }

  /** The stream ended or broke before the response did. */
  abort(reason: string): void {
    if (this.routed) this.routed.finish({ status: this.responseStatus, error: reason });
    this.trace?.end(this.responseStatus, this.done ? undefined : reason);
    this.done = true;
  }

  private async route(): Promise<void> {
    const body = this.body.length > 0 ? Buffer.concat(this.body) : null;
    const trace = this.trace;
    const route = (): ReturnType<RequestDirector['route']> => this.options.director.route({ requestId: this.headers['x-request-id'] ?? null, path: this.headers[':path'] ?? '/', headers: this.headers, body, subset: this.subset });
    const outcome = await (trace ? trace.run(route) : route());
    if (!outcome.ok) return this.immediate(outcome.rejection.status, outcome.rejection.code, outcome.rejection.message, outcome.rejection.headers);
    const routed = outcome.routed;
    this.routed = routed;
    const destinations = routed.destinationHeader;
    const set = [setHeader(DESTINATION, destinations)];
    if (trace) {
      trace.routed({ 'kvix.request_id': routed.id, 'kvix.model': routed.targetModel, 'kvix.endpoint': routed.endpoints[0]!.id });
      // Envoy forwards the request with these: the pod's spans continue the upstream call's.
      for (const [k, v] of Object.entries(trace.upstream(routed.endpoints[0]!.id, 0))) set.push(setHeader(k, v));
    }
    if (routed.bodyChanged && routed.body) set.push(setHeader('content-length', String(routed.body.length)));
    this.send({
      requestHeaders: { response: { clearRouteCache: true, headerMutation: { setHeaders: set } } },
      dynamicMetadata: structOf('envoy.lb', DESTINATION, destinations),
    });
    if (body !== null) this.sendBody('requestBody', routed.body ?? body, true);
  }

  private sendBody(kind: 'requestBody' | 'responseBody', body: Buffer, endOfStream: boolean): void {
    if (body.length <= MAX_CHUNK) {
      this.send({ [kind]: { response: { bodyMutation: { streamedResponse: { body, endOfStream } } } } });
      return;
    }
    for (let at = 0; at < body.length; at += MAX_CHUNK) {
      const last = at + MAX_CHUNK >= body.length;
      this.send({ [kind]: { response: { bodyMutation: { streamedResponse: { body: body.subarray(at, at + MAX_CHUNK), endOfStream: endOfStream && last } } } } });
    }
  }

  private immediate(status: number, code: string, message: string, headers: Record<string, string>): void {
    const body = JSON.stringify({ error: { message, type: status >= 500 ? 'server_error' : 'invalid_request_error', code } });
    this.send({
      immediateResponse: {
        status: { code: statusCodeName(status) },
        headers: { setHeaders: [setHeader('content-type', 'application/json'), ...Object.entries(headers).map(([k, v]) => setHeader(k, v))] },
        body: Buffer.from(body),
        details: code,
      },
    });
    this.trace?.end(status, code);
    this.done = true;
    this.stream.end();
  }

  private finishResponse(): void {
    if (this.routed) this.routed.finish({ status: this.responseStatus });
    this.trace?.end(this.responseStatus);
  }

  private send(response: ProcessingResponse): void {
    if (this.stream.writable) this.stream.write(response);
  }
}

/** envoy.type.v3.StatusCode names of the statuses the EPP answers with itself. */
const STATUS_NAMES: Record<number, StatusCode> = { 400: 'BadRequest', 404: 'NotFound', 413: 'PayloadTooLarge', 429: 'TooManyRequests', 500: 'InternalServerError', 502: 'BadGateway', 503: 'ServiceUnavailable' };

function statusCodeName(status: number): StatusCode {
  return STATUS_NAMES[status] ?? 'InternalServerError';
}
