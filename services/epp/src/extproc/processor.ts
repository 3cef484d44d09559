import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { ProcessingRequest__Output, ProcessingResponse, ProtocolConfiguration__Output, StatusCode } from '@kvix/proto';
import type { RequestDirector, ResponseStream, RoutedRequest } from '@kvix/scheduler';
import { RequestTrace } from '@kvix/telemetry';
import type { Logger } from 'pino';
import { headerRecord, metadataStrings, setHeader, structOf } from './headers.js';

/** The header and metadata key proxies route on (Gateway API Inference Extension protocol). */
export const DESTINATION = 'x-gateway-destination-endpoint';
export const DESTINATION_SERVED = 'x-gateway-destination-endpoint-served';
export const LB_NAMESPACE = 'envoy.lb';
export const SUBSET_NAMESPACE = 'envoy.lb.subset_hint';
export const SUBSET_KEY = 'x-gateway-destination-endpoint-subset';
/** The endpoint that served, on every answer (the gateway names it the same way). */
export const ENDPOINT_HEADER = 'x-kvix-endpoint';
/** Envoy's limit per streamed body chunk is larger; the protocol keeps each under 62,000 bytes. */
export const MAX_CHUNK = 62_000;

export interface ProcessorOptions {
  director: RequestDirector;
  logger: Logger;
  maxBodyBytes: number;
}

type Stream = ServerDuplexStream<ProcessingRequest__Output, ProcessingResponse>;

/**
 * How the proxy sends one direction's body, from the `protocol_config` Envoy puts on the first
 * message: chunks answered by a stream of our own (FULL_DUPLEX_STREAMED, the default when the
 * proxy does not say), each message answered in turn (STREAMED, BUFFERED, BUFFERED_PARTIAL: Envoy
 * keeps the chunk until the answer, so it can carry on without us if we fail), or not at all.
 */
type BodyMode = 'duplex' | 'per-message' | 'none';

function bodyModeOf(mode: string | undefined): BodyMode {
  if (mode === 'NONE') return 'none';
  if (mode === 'STREAMED' || mode === 'BUFFERED' || mode === 'BUFFERED_PARTIAL') return 'per-message';
  return 'duplex';
}

/** Misconfigurations already logged: once per process, not once per request. */
const reported = new Set<string>();

/**
 * One HTTP request's ext_proc stream. Request headers are held (not answered) until the body is
 * complete (FULL_DUPLEX_STREAMED); then the endpoint is picked and the deferred header answer
 * carries it (header mutation and `envoy.lb` dynamic metadata), followed by the body echoed back
 * (rewritten when aliased) in chunks. The response side is forwarded chunk by chunk as it comes,
 * model names mapped back for aliases.
 */
export class ExchangeProcessor {
  private headers: Record<string, string> = {};
  private subset: string[] | null = null;
  private readonly body: Buffer[] = [];
  private bodyBytes = 0;
  /** Request body messages received: in per-message mode each one is answered, in order. */
  private bodyMessages = 0;
  private readonly bodySizes: number[] = [];
  private routed: RoutedRequest | null = null;
  private response: ResponseStream | null = null;
  private responseStatus: number | null = null;
  private requestBodyMode: BodyMode = 'duplex';
  private responseBodyMode: BodyMode = 'duplex';
  private done = false;
  private responseFinished = false;
  /** The request's span (from its headers on): routing, then the call Envoy makes to the pod. */
  private trace: RequestTrace | null = null;

  constructor(
    private readonly stream: Stream,
    private readonly options: ProcessorOptions,
  ) {}

  async onMessage(message: ProcessingRequest__Output): Promise<void> {
    if (this.done) return;
    if (message.protocolConfig) this.configure(message.protocolConfig);
    switch (message.request) {
      case 'requestHeaders': {
        this.headers = headerRecord(message.requestHeaders?.headers);
        this.subset = metadataStrings(message.metadataContext, SUBSET_NAMESPACE, SUBSET_KEY);
        this.trace = RequestTrace.start('ext_proc', this.headers[':method'] ?? 'POST', this.headers[':path'] ?? '/', this.headers);
        // Without a body coming (none, or a proxy that sends none), route on load alone now.
        if (message.requestHeaders?.endOfStream || this.requestBodyMode === 'none') await this.route();
        return;
      }
      case 'requestBody': {
        const chunk = message.requestBody!;
        this.bodyBytes += chunk.body.length;
        if (this.bodyBytes > this.options.maxBodyBytes) return this.immediate(413, 'BODY_TOO_LARGE', `request bodies are limited to ${this.options.maxBodyBytes} bytes`, {});
        if (chunk.body.length > 0) this.body.push(chunk.body);
        this.bodyMessages++;
        this.bodySizes.push(chunk.body.length);
        if (chunk.endOfStream) await this.route();
        return;
      }
      case 'requestTrailers':
        return this.send({ requestTrailers: {} });
      case 'responseHeaders': {
        const headers = headerRecord(message.responseHeaders?.headers);
        this.responseStatus = Number(headers[':status']) || null;
        const served = metadataStrings(message.metadataContext, LB_NAMESPACE, DESTINATION_SERVED)?.[0];
        const routed = this.routed;
        if (!routed) return this.send({ responseHeaders: {} });
        if (served) routed.served(served);
        this.response = routed.responseStream(headers['content-type'] ?? null);
        const set = Object.entries({ ...routed.responseHeaders(), [ENDPOINT_HEADER]: served ?? routed.primaryDestination }).map(([k, v]) => setHeader(k, v));
        // An alias rewrites the body on the way out: its length is no longer the upstream's.
        const remove = routed.clientModel !== routed.targetModel ? ['content-length'] : [];
        this.send({ responseHeaders: { response: { headerMutation: { setHeaders: set, removeHeaders: remove } } } });
        if (message.responseHeaders?.endOfStream) this.finishResponse();
        return;
      }
      case 'responseBody': {
        const chunk = message.responseBody!;
        const out = this.response ? this.response.push(chunk.body) : chunk.body;
        const tail = chunk.endOfStream && this.response ? this.response.end() : null;
        const bytes = tail && tail.length > 0 ? Buffer.concat([out, tail]) : out;
        if (this.responseBodyMode === 'per-message') this.answerBodyMessage(chunk.body, bytes);
        else this.sendBody('responseBody', bytes, chunk.endOfStream);
        if (chunk.endOfStream) this.finishResponse();
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

  /**
   * The proxy half-closed the stream: the exchange is over. With response bodies not sent to us,
   * this is where the response ends; otherwise it ended already (or never started).
   */
  onProxyDone(): void {
    if (this.routed && this.responseStatus !== null && this.responseBodyMode === 'none') this.finishResponse();
    this.abort('STREAM_CLOSED');
  }

  /** Whether the exchange is over for us: answered at once, or its response ended. */
  get complete(): boolean {
    return this.responseFinished || (this.done && this.routed === null);
  }

  /** The stream ended or broke before the response did. */
  abort(reason: string): void {
    if (this.routed) this.routed.finish({ status: this.responseStatus, error: reason });
    this.trace?.end(this.responseStatus, this.done ? undefined : reason);
    this.done = true;
  }

  private configure(config: ProtocolConfiguration__Output): void {
    this.requestBodyMode = bodyModeOf(config.requestBodyMode);
    this.responseBodyMode = bodyModeOf(config.responseBodyMode);
    // Modes that lose something are worth one line: no prompt, a cut prompt, or no response.
    const lossy: [string, string | undefined, string][] = [
      ['request', config.requestBodyMode, config.requestBodyMode === 'NONE' ? 'requests are routed on load alone (no prompt to match)' : 'only the first part of a large body is seen (its JSON will not parse: 400)'],
      ['response', config.responseBodyMode, 'responses are not read (no token metrics, aliases not mapped back)'],
    ];
    for (const [side, mode, effect] of lossy) {
      const loses = mode === 'NONE' || (side === 'request' && mode === 'BUFFERED_PARTIAL');
      if (!loses || reported.has(`${side}:${mode}`)) continue;
      reported.add(`${side}:${mode}`);
      this.options.logger.warn({ side, mode }, `the proxy sends ${side} bodies ${mode}: ${effect}`);
    }
  }

  private async route(): Promise<void> {
    const body = this.body.length > 0 ? Buffer.concat(this.body) : null;
    const trace = this.trace;
    const route = (): ReturnType<RequestDirector['route']> => this.options.director.route({ requestId: this.headers['x-request-id'] ?? null, path: this.headers[':path'] ?? '/', headers: this.headers, body, subset: this.subset });
    const outcome = await (trace ? trace.run(route) : route());
    if (!outcome.ok) return this.immediate(outcome.rejection.status, outcome.rejection.code, outcome.rejection.message, outcome.rejection.headers);
    const routed = outcome.routed;
    this.routed = routed;
    // The header holds one endpoint (all ORIGINAL_DST reads); the metadata the ordered list with
    // the fallbacks, which Envoy's override_host policy walks on retries. Both start with the same pick.
    const set = [setHeader(DESTINATION, routed.primaryDestination)];
    if (trace) {
      trace.routed({ 'kvix.request_id': routed.id, 'kvix.model': routed.targetModel, 'kvix.endpoint': routed.endpoints[0]!.id });
      // Envoy forwards the request with these: the pod's spans continue the upstream call's.
      for (const [k, v] of Object.entries(trace.upstream(routed.endpoints[0]!.id, 0))) set.push(setHeader(k, v));
    }
    if (routed.bodyChanged && routed.body) set.push(setHeader('content-length', String(routed.body.length)));
    this.send({
      requestHeaders: { response: { clearRouteCache: true, headerMutation: { setHeaders: set } } },
      dynamicMetadata: structOf(LB_NAMESPACE, DESTINATION, routed.destinationList),
    });
    if (body === null) return;
    if (this.requestBodyMode === 'duplex') return this.sendBody('requestBody', routed.body ?? body, true);
    // Per message: the proxy holds every chunk until its answer. Unchanged, each goes on as it
    // is; rewritten (an alias), the new body replaces them slice by slice, each answer about as
    // large as the chunk it answers (the last takes the rest), so no message outgrows the stream's.
    if (!routed.bodyChanged || !routed.body) {
      for (let i = 0; i < this.bodyMessages; i++) this.send({ requestBody: {} });
      return;
    }
    const replacement = routed.body;
    let at = 0;
    for (let i = 0; i < this.bodyMessages; i++) {
      const last = i === this.bodyMessages - 1;
      const slice = last ? replacement.subarray(at) : replacement.subarray(at, at + (this.bodySizes[i] ?? 0));
      at += slice.length;
      this.send({ requestBody: { response: { bodyMutation: slice.length > 0 ? { body: slice } : { clearBody: true } } } });
    }
  }

  /** A per-message answer: nothing when the bytes go on unchanged, else what replaces the chunk. */
  private answerBodyMessage(received: Buffer, bytes: Buffer): void {
    if (bytes === received) return this.send({ responseBody: {} });
    this.send({ responseBody: { response: { bodyMutation: bytes.length > 0 ? { body: bytes } : { clearBody: true } } } });
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
    this.responseFinished = true;
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
