import { randomUUID } from 'node:crypto';
import type { Agent, IncomingMessage, ServerResponse } from 'node:http';
import {
  httpStatusNumber,
  type BodyMutation__Output,
  type ImmediateResponse__Output,
  type Metadata,
  type ProcessingResponse__Output,
} from '@kvix/proto';
import { BodyBuffer } from './body-buffer.js';
import { destinationsOf, LB_NAMESPACE, originalDestinationOf, SERVED_KEY, type Endpoint } from './destination.js';
import { EnvoySimError } from './errors.js';
import type { ExchangeOutcome, ExchangeReport, ProcessorRole, UpstreamAttempt } from './exchange-report.js';
import { HeaderList, HOP_BY_HOP } from './header-list.js';
import { applyHeaderMutation } from './header-mutation.js';
import { fromStruct, toStruct, type JsonObject } from './json-struct.js';
import type { MetadataContext, ResolvedOptions } from './options.js';
import type { ProcessorPool } from './processor-pool.js';
import { ProcessorStream, type ProcessorEvent } from './processor-stream.js';
import { forwardUpstream, type UpstreamCall } from './upstream-forwarder.js';

export interface ExchangeDeps {
  id: number;
  options: ResolvedOptions;
  /** The ext_proc cluster the request's stream is opened on. */
  pool: ProcessorPool;
  agent: Agent;
  /** The default upstreams for this request, the one whose turn it is first (round robin). */
  defaultUpstreams(): Endpoint[];
  /** Every processor stream opened, so the simulator can reset those still open when it closes. */
  onStream(stream: ProcessorStream): void;
  onDone(report: ExchangeReport): void;
}

const violation = (message: string) => new EnvoySimError('PROTOCOL_VIOLATION', message);

function toMetadata(context: MetadataContext): Metadata {
  return { filterMetadata: Object.fromEntries(Object.entries(context).map(([ns, fields]) => [ns, toStruct(fields)])) };
}

function slices(chunk: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < chunk.length; at += size) out.push(chunk.subarray(at, at + size));
  return out;
}

function declaredLength(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d+$/.test(value.trim())) return undefined;
  return Number(value);
}

/**
 * One HTTP request through the simulated Envoy: the ext_proc filter in FULL_DUPLEX_STREAMED mode
 * (headers, body chunks and trailers to the processor as they arrive, its answers applied as they
 * come back) in front of the pool cluster of deploy/envoy/envoy.yaml (override_host on the
 * processor's envoy.lb list), or of an ORIGINAL_DST cluster routed by the header when there is no pool.
 *
 * Everything is event-driven: client data, processor answers and upstream data each move the
 * exchange on; `done` guards against anything arriving after the client has its answer.
 */
export class Exchange {
  private readonly options: ResolvedOptions;
  private readonly notes: string[] = [];
  private readonly requestHeaders: HeaderList;
  private readonly requestId: string;
  private readonly hasRequestBody: boolean;
  /** The client's body as received, for forwarding unmodified when the processor drops out. */
  private readonly originalBody = new BodyBuffer();
  /** The body the processor streams back, which is what goes upstream. */
  private readonly processedBody = new BodyBuffer();
  private readonly stream: ProcessorStream;
  private readonly timings: ExchangeReport['timings'];
  private staticMetadata: MetadataContext | undefined;

  private processorActive = true;
  private role: ProcessorRole = 'processed';
  private outcome: ExchangeOutcome | undefined;
  private status = 0;
  private dynamicMetadata: Record<string, JsonObject> = {};
  private endpoints: Endpoint[] = [];
  private readonly attempts: UpstreamAttempt[] = [];
  private served: Endpoint | undefined;
  private routeCacheCleared = false;

  private requestEosSent = false;
  private requestHeadersAnswered = false;
  private requestBodyAnswered = false;
  private upstreamCall: UpstreamCall | undefined;

  private responseHeaders: HeaderList | undefined;
  private upstreamTrailers: HeaderList | undefined;
  private responseHasBody = false;
  private responseHeadersSent = false;
  private responseEosSent = false;
  private responseHeadersAnswered = false;
  private responseAnswered = false;
  private upstreamEnded = false;
  /** Upstream chunks not yet known to reach the client (replayed if the processor drops out). */
  private heldResponseChunks: Buffer[] = [];
  private clientHeadSent = false;
  private done = false;

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly deps: ExchangeDeps,
  ) {
    this.options = deps.options;
    this.timings = { received: performance.now(), finished: 0 };
    const incoming = HeaderList.fromRaw(req.rawHeaders);
    const authority = incoming.get('host') ?? '';
    incoming.remove('host');
    // Envoy's HTTP/1 codec turns the request line and Host into pseudo-headers, and the
    // connection manager adds x-forwarded-proto and x-request-id before any filter runs.
    this.requestHeaders = new HeaderList([
      [':method', req.method ?? 'GET'],
      [':path', req.url ?? '/'],
      [':authority', authority],
      [':scheme', 'http'],
      ...incoming.entries(),
    ]);
    if (!this.requestHeaders.has('x-forwarded-proto')) this.requestHeaders.add('x-forwarded-proto', 'http');
    if (!this.requestHeaders.has('x-request-id')) this.requestHeaders.add('x-request-id', randomUUID());
    this.requestId = this.requestHeaders.get('x-request-id') ?? '';
    this.hasRequestBody = req.headers['transfer-encoding'] !== undefined || (declaredLength(req.headers['content-length']) ?? 0) > 0;
    this.stream = new ProcessorStream(
      deps.pool,
      { retryOn: this.options.extProcRetryOn, numRetries: this.options.extProcNumRetries },
      this.options.messageTimeoutMs,
      (event) => this.onProcessorEvent(event),
    );
    deps.onStream(this.stream);
  }

  start(): void {
    this.res.on('close', () => this.finish());
    // A client that goes away surfaces as the response closing; the request's own error adds nothing.
    this.req.on('error', () => {});
    this.staticMetadata = this.options.metadataContext({ method: this.req.method ?? 'GET', path: this.req.url ?? '/', headers: this.req.headers });
    this.stream.send({
      requestHeaders: { headers: this.requestHeaders.toProto(), endOfStream: !this.hasRequestBody },
      metadataContext: this.staticMetadata ? toMetadata(this.staticMetadata) : undefined,
      protocolConfig: { requestBodyMode: 'FULL_DUPLEX_STREAMED', responseBodyMode: 'FULL_DUPLEX_STREAMED' },
    });
    if (!this.hasRequestBody) this.requestEosSent = true;
    this.pumpRequestBody();
    this.updateWatchdog();
  }

  /** Ends the exchange now (the simulator is closing). */
  abort(): void {
    if (!this.done) this.resetClient();
    this.finish();
  }

  // ---- request path ---------------------------------------------------------------------------

  private pumpRequestBody(): void {
    const declared = declaredLength(this.req.headers['content-length']);
    let seen = 0;
    this.req.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      this.originalBody.push(chunk);
      if (!this.sendingToProcessor() || this.requestEosSent) return;
      const parts = slices(chunk, this.options.chunkSize);
      parts.forEach((body, i) => {
        // With a declared length the last byte is known on arrival, and Envoy's codec marks that
        // chunk as the end of the stream; a chunked body ends with an empty chunk instead.
        const last = declared !== undefined && seen >= declared && i === parts.length - 1;
        this.stream.send({ requestBody: { body, endOfStream: last } });
        if (last) this.requestEosSent = true;
      });
      this.updateWatchdog();
    });
    this.req.on('end', () => {
      this.originalBody.end();
      if (!this.hasRequestBody || this.requestEosSent || !this.sendingToProcessor()) return;
      const trailers = HeaderList.fromRaw(this.req.rawTrailers);
      if (trailers.entries().length > 0) this.stream.send({ requestTrailers: { trailers: trailers.toProto() } });
      else this.stream.send({ requestBody: { body: Buffer.alloc(0), endOfStream: true } });
      this.requestEosSent = true;
      this.updateWatchdog();
    });
  }

  private sendingToProcessor(): boolean {
    return this.processorActive && this.stream.open && !this.done;
  }

  private onRequestHeadersAnswer(message: ProcessingResponse__Output): void {
    if (this.requestHeadersAnswered) throw violation('a second request_headers answer');
    this.requestHeadersAnswered = true;
    this.timings.requestHeadersAnswered = performance.now();
    const common = message.requestHeaders?.response;
    // FULL_DUPLEX_STREAMED: the body going upstream is the processor's, so the client's length
    // no longer holds; the processor may set its own in the mutation.
    if (this.hasRequestBody) this.requestHeaders.remove('content-length');
    if (common?.headerMutation) applyHeaderMutation(this.requestHeaders, common.headerMutation, this.notes);
    if (common?.clearRouteCache) this.routeCacheCleared = true;
    if (common?.bodyMutation) this.notes.push('request_headers answer: body_mutation ignored in FULL_DUPLEX_STREAMED');
    if (!this.hasRequestBody) this.requestBodyAnswered = true;
    this.startUpstream(this.chooseEndpoints(), this.hasRequestBody ? this.processedBody : null);
  }

  /**
   * With a pool (`defaultUpstream`), the cluster of deploy/envoy/envoy.yaml: its override_host
   * policy takes the processor's envoy.lb list in order, skipping addresses that are not pool
   * hosts, then round robin over the pool for any retry left (the header is not read). Without a
   * pool, an ORIGINAL_DST cluster: the header's one address.
   */
  private chooseEndpoints(): Endpoint[] {
    const pool = this.options.defaultUpstreams;
    if (pool.length === 0) {
      const { endpoints, invalid } = originalDestinationOf(this.requestHeaders);
      for (const entry of invalid) this.notes.push(`x-gateway-destination-endpoint ${JSON.stringify(entry)} is not one host:port: no host (ORIGINAL_DST reads one address)`);
      return endpoints;
    }
    const { endpoints, invalid, source } = destinationsOf(this.requestHeaders, this.dynamicMetadata);
    for (const entry of invalid) this.notes.push(`destination ${JSON.stringify(entry)} is not host:port: skipped`);
    if (source === 'header') this.notes.push('x-gateway-destination-endpoint header ignored: override_host reads the envoy.lb metadata list');
    const listed = source === 'metadata' ? endpoints : [];
    const inPool = listed.filter((e) => pool.some((p) => p.address === e.address));
    for (const e of listed) if (!inPool.includes(e)) this.notes.push(`destination ${e.address} is not a host of the pool: skipped`);
    const rest = pool.filter((p) => !inPool.some((e) => e.address === p.address));
    return [...inPool, ...rest];
  }

  private onRequestBodyAnswer(message: ProcessingResponse__Output): void {
    if (!this.requestHeadersAnswered) throw violation('request_body answer before the request_headers answer');
    if (this.requestBodyAnswered) throw violation('request_body answer after the request body ended');
    this.takeStreamedChunk(
      'request_body',
      message.requestBody?.response?.bodyMutation,
      (chunk) => this.processedBody.push(chunk),
      () => {
        this.requestBodyAnswered = true;
        this.processedBody.end();
      },
    );
  }

  private onRequestTrailersAnswer(): void {
    if (!this.requestHeadersAnswered) throw violation('request_trailers answer before the request_headers answer');
    // Trailers end the body; they are not forwarded upstream (see README).
    this.requestBodyAnswered = true;
    this.processedBody.end();
  }

  private startUpstream(endpoints: Endpoint[], body: BodyBuffer | null): void {
    this.endpoints = endpoints;
    if (endpoints.length === 0) {
      this.fail(503, 'no-route', 'no healthy upstream');
      return;
    }
    const headers = this.requestHeaders.toOutgoing(HOP_BY_HOP);
    headers.host = this.requestHeaders.get(':authority') ?? '';
    this.upstreamCall = forwardUpstream(
      {
        method: this.requestHeaders.get(':method') ?? 'GET',
        path: this.requestHeaders.get(':path') ?? '/',
        headers,
        body,
        endpoints,
        agent: this.deps.agent,
        connectTimeoutMs: this.options.connectTimeoutMs,
        retries: this.options.upstreamRetries,
      },
      {
        onResponse: (response, endpoint) => this.onUpstreamResponse(response, endpoint),
        onRetriableFailure: (endpoint, reason) => this.attempts.push({ endpoint: endpoint.address, error: reason }),
        onExhausted: () =>
          this.fail(
            503,
            'upstream-unavailable',
            `upstream connect error or disconnect/reset before headers. retried and the latest reset reason: connection failure (tried ${this.attempts.map((a) => a.endpoint).join(', ')})`,
          ),
        onReset: (endpoint, reason) => {
          this.notes.push(`upstream ${endpoint.address}: ${reason}`);
          this.fail(503, 'upstream-reset', `upstream connect error or disconnect/reset before headers. reset reason: ${reason}`);
        },
      },
    );
  }

  // ---- response path --------------------------------------------------------------------------

  private onUpstreamResponse(response: IncomingMessage, endpoint: Endpoint): void {
    if (this.done) {
      response.resume();
      return;
    }
    this.served = endpoint;
    this.attempts.push({ endpoint: endpoint.address });
    this.timings.upstreamHeaders = performance.now();
    const status = response.statusCode ?? 502;
    const headers = new HeaderList([[':status', String(status)]]);
    for (const [key, value] of HeaderList.fromRaw(response.rawHeaders).entries()) if (!HOP_BY_HOP.has(key)) headers.add(key, value);
    this.responseHeaders = headers;
    const method = this.requestHeaders.get(':method');
    this.responseHasBody = !(method === 'HEAD' || status === 204 || status === 304 || response.headers['content-length'] === '0');
    if (this.processorActive) {
      this.stream.send({ responseHeaders: { headers: headers.toProto(), endOfStream: !this.responseHasBody }, metadataContext: this.responseMetadata(endpoint) });
      this.responseHeadersSent = true;
      if (!this.responseHasBody) this.responseEosSent = true;
    } else {
      this.writeClientHead(headers);
    }
    this.pumpResponseBody(response);
    this.updateWatchdog();
  }

  /** What Envoy forwards with the response headers: the request's metadata plus the served endpoint. */
  private responseMetadata(endpoint: Endpoint): Metadata {
    const base = this.staticMetadata ?? {};
    const lb: JsonObject = { ...(base[LB_NAMESPACE] ?? {}), ...(this.dynamicMetadata[LB_NAMESPACE] ?? {}), [SERVED_KEY]: endpoint.address };
    return toMetadata({ ...base, [LB_NAMESPACE]: lb });
  }

  private pumpResponseBody(response: IncomingMessage): void {
    const declared = declaredLength(response.headers['content-length']);
    let seen = 0;
    response.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      if (this.done) return;
      if (this.processorActive) {
        if (!this.responseHeadersAnswered) this.heldResponseChunks.push(chunk);
        const parts = slices(chunk, this.options.chunkSize);
        parts.forEach((body, i) => {
          const last = declared !== undefined && seen >= declared && i === parts.length - 1;
          this.stream.send({ responseBody: { body, endOfStream: last } });
          if (last) this.responseEosSent = true;
        });
      } else if (this.clientHeadSent) {
        this.res.write(chunk);
      } else {
        this.heldResponseChunks.push(chunk);
      }
      this.updateWatchdog();
    });
    response.on('end', () => {
      this.upstreamEnded = true;
      if (this.done) return;
      if (this.processorActive) {
        if (this.responseHasBody && !this.responseEosSent) {
          const trailers = HeaderList.fromRaw(response.rawTrailers);
          if (trailers.entries().length > 0) {
            this.upstreamTrailers = trailers;
            this.stream.send({ responseTrailers: { trailers: trailers.toProto() } });
          } else {
            this.stream.send({ responseBody: { body: Buffer.alloc(0), endOfStream: true } });
          }
          this.responseEosSent = true;
        }
      } else if (this.clientHeadSent) {
        this.endClient(HeaderList.fromRaw(response.rawTrailers));
      }
      this.updateWatchdog();
    });
  }

  private onResponseHeadersAnswer(message: ProcessingResponse__Output): void {
    if (!this.responseHeadersSent || this.responseHeadersAnswered || !this.responseHeaders) {
      throw violation('response_headers answer while no response headers were sent');
    }
    this.responseHeadersAnswered = true;
    this.timings.responseHeadersAnswered = performance.now();
    this.heldResponseChunks = [];
    const headers = this.responseHeaders;
    // FULL_DUPLEX_STREAMED: the processor's body may differ in length from the upstream's.
    if (this.responseHasBody) headers.remove('content-length');
    const mutation = message.responseHeaders?.response?.headerMutation;
    if (mutation) applyHeaderMutation(headers, mutation, this.notes);
    this.writeClientHead(headers);
    if (!this.responseHasBody) this.endClient();
  }

  private onResponseBodyAnswer(message: ProcessingResponse__Output): void {
    if (!this.responseHeadersAnswered) throw violation('response_body answer before the response_headers answer');
    if (this.responseAnswered) throw violation('response_body answer after the response body ended');
    this.takeStreamedChunk(
      'response_body',
      message.responseBody?.response?.bodyMutation,
      (chunk) => this.res.write(chunk),
      () => this.endClient(this.upstreamTrailers),
    );
  }

  private onResponseTrailersAnswer(message: ProcessingResponse__Output): void {
    if (!this.responseHeadersAnswered) throw violation('response_trailers answer before the response_headers answer');
    const trailers = this.upstreamTrailers ?? new HeaderList();
    const mutation = message.responseTrailers?.headerMutation;
    if (mutation) applyHeaderMutation(trailers, mutation, this.notes);
    this.endClient(trailers);
  }

  private takeStreamedChunk(what: string, mutation: BodyMutation__Output | null | undefined, onChunk: (chunk: Buffer) => void, onEnd: () => void): void {
    if (!mutation?.mutation) {
      this.notes.push(`${what} answer without a body mutation: nothing forwarded for it`);
      return;
    }
    if (mutation.mutation !== 'streamedResponse' || !mutation.streamedResponse) {
      throw violation(`${what} answer with body_mutation.${mutation.mutation}: FULL_DUPLEX_STREAMED needs streamed_response`);
    }
    const { body, endOfStream } = mutation.streamedResponse;
    if (body.length > 0) onChunk(body);
    if (endOfStream) onEnd();
  }

  // ---- processor events -----------------------------------------------------------------------

  private onProcessorEvent(event: ProcessorEvent): void {
    if (this.done || !this.processorActive) return;
    // Once the client has its whole answer the filter is done: a close is the normal end of the
    // stream, and a failure (the processor going away just then) changes nothing.
    if (event.kind !== 'message' && this.responseAnswered) return;
    try {
      if (event.kind === 'message') this.onMessage(event.message);
      else if (event.kind === 'closed') this.continueWithoutProcessor('closed-early');
      else if (event.kind === 'timeout') this.processorFailed('processor-timeout', 'ext_proc: message timeout');
      else this.processorFailed('processor-error', `ext_proc: gRPC stream failed with status ${event.code}${event.details ? ` (${event.details})` : ''}`);
    } catch (err) {
      if (!(err instanceof EnvoySimError)) throw err;
      this.processorFailed('protocol-error', `ext_proc: ${err.message}`);
    }
    this.updateWatchdog();
  }

  private onMessage(message: ProcessingResponse__Output): void {
    if (message.dynamicMetadata) {
      for (const [namespace, fields] of Object.entries(fromStruct(message.dynamicMetadata))) {
        if (fields !== null && typeof fields === 'object' && !Array.isArray(fields)) {
          this.dynamicMetadata[namespace] = { ...(this.dynamicMetadata[namespace] ?? {}), ...fields };
        }
      }
    }
    if (message.modeOverride) this.notes.push('mode_override ignored: allow_mode_override is false (and FULL_DUPLEX_STREAMED cannot be overridden)');
    if (message.overrideMessageTimeout) this.notes.push('override_message_timeout ignored: max_message_timeout is not configured');
    switch (message.response) {
      case 'requestHeaders':
        return this.onRequestHeadersAnswer(message);
      case 'requestBody':
        return this.onRequestBodyAnswer(message);
      case 'requestTrailers':
        return this.onRequestTrailersAnswer();
      case 'responseHeaders':
        return this.onResponseHeadersAnswer(message);
      case 'responseBody':
        return this.onResponseBodyAnswer(message);
      case 'responseTrailers':
        return this.onResponseTrailersAnswer(message);
      case 'immediateResponse':
        return this.onImmediateResponse(message.immediateResponse ?? null);
      default:
        throw violation('a ProcessingResponse with no response set');
    }
  }

  private onImmediateResponse(immediate: ImmediateResponse__Output | null): void {
    this.outcome = 'immediate-response';
    if (immediate?.details) this.notes.push(`immediate_response details: ${immediate.details}`);
    this.stream.cancel();
    this.upstreamCall?.abort();
    if (this.clientHeadSent) {
      // Too late for a local reply: Envoy resets the downstream stream.
      this.resetClient();
      return;
    }
    let status = httpStatusNumber(immediate?.status?.code ?? 0);
    if (status < 200) {
      this.notes.push(`immediate_response status ${status} is not a valid final status: 200 sent, as Envoy does`);
      status = 200;
    }
    const body = immediate?.body ?? Buffer.alloc(0);
    const headers = new HeaderList(body.length > 0 ? [['content-type', 'text/plain']] : []);
    if (immediate?.headers) applyHeaderMutation(headers, immediate.headers, this.notes);
    if (immediate?.grpcStatus) this.notes.push('immediate_response grpc_status not sent: the request is not gRPC');
    this.localReply(status, headers, body);
  }

  /** Envoy without the processor from here on: a clean close, or a failure under failure_mode_allow. */
  private continueWithoutProcessor(role: ProcessorRole): void {
    this.processorActive = false;
    this.role = role;
    this.stream.setWaiting(false);
    if (this.upstreamCall === undefined && !this.clientHeadSent) {
      this.startUpstream(this.deps.defaultUpstreams(), this.hasRequestBody ? this.originalBody : null);
      return;
    }
    if (!this.requestBodyAnswered) {
      if (this.processedBody.length > 0) {
        this.fail(500, 'protocol-error', 'ext_proc: the processor stopped in the middle of the request body');
        return;
      }
      this.requestBodyAnswered = true;
      this.processedBody.follow(this.originalBody);
    }
    if (this.responseHeaders && !this.clientHeadSent) this.writeClientHead(this.responseHeaders);
    if (this.clientHeadSent && !this.responseAnswered) {
      for (const chunk of this.heldResponseChunks) this.res.write(chunk);
      this.heldResponseChunks = [];
      if (this.upstreamEnded || !this.responseHasBody) this.endClient(this.upstreamTrailers);
    }
  }

  private processorFailed(outcome: ExchangeOutcome, message: string): void {
    this.stream.cancel();
    if (this.options.failureModeAllow) {
      this.notes.push(`${message}: processing skipped (failure_mode_allow)`);
      this.continueWithoutProcessor('skipped');
      return;
    }
    this.role = 'failed';
    this.notes.push(message);
    this.fail(outcome === 'processor-timeout' ? 504 : 500, outcome, message);
  }

  private updateWatchdog(): void {
    const requestOutstanding = this.requestEosSent && !(this.requestHeadersAnswered && this.requestBodyAnswered);
    const responseOutstanding = (this.responseHeadersSent && !this.responseHeadersAnswered) || (this.responseEosSent && !this.responseAnswered);
    this.stream.setWaiting(this.processorActive && !this.done && (requestOutstanding || responseOutstanding));
  }

  // ---- client side ----------------------------------------------------------------------------

  private writeClientHead(headers: HeaderList): void {
    const status = Number(headers.get(':status'));
    if (!Number.isInteger(status) || status < 100 || status > 999) throw violation(`invalid :status ${JSON.stringify(headers.get(':status'))}`);
    const outgoing = headers.toOutgoing(HOP_BY_HOP);
    if (this.options.upstreamHeader && this.served) outgoing['x-envoy-sim-upstream'] = this.served.address;
    this.res.writeHead(status, outgoing);
    // Sent now rather than with the first body write: a streaming client sees the head at once.
    this.res.flushHeaders();
    this.clientHeadSent = true;
    this.status = status;
  }

  private endClient(trailers?: HeaderList): void {
    if (this.responseAnswered) return;
    this.responseAnswered = true;
    this.outcome ??= 'proxied';
    if (trailers && trailers.entries().length > 0) this.res.addTrailers(trailers.toOutgoing());
    this.res.end();
    // As Envoy by default: its filter is done, so it half-closes the stream and resets it at once.
    this.stream.closeAndReset();
  }

  private localReply(status: number, headers: HeaderList, body: Buffer): void {
    const outgoing = headers.toOutgoing(HOP_BY_HOP);
    outgoing['content-length'] = String(body.length);
    this.res.writeHead(status, outgoing);
    this.res.end(body);
    this.clientHeadSent = true;
    this.responseAnswered = true;
    this.status = status;
  }

  private fail(status: number, outcome: ExchangeOutcome, message: string): void {
    if (this.done) return;
    this.outcome ??= outcome;
    this.stream.cancel();
    this.upstreamCall?.abort();
    if (this.clientHeadSent) this.resetClient();
    else if (!this.responseAnswered) this.localReply(status, new HeaderList([['content-type', 'text/plain']]), Buffer.from(`${message}\n`));
  }

  private resetClient(): void {
    this.status = 0;
    this.responseAnswered = true;
    this.res.destroy();
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    if (!this.res.writableFinished) {
      this.outcome ??= 'client-aborted';
      if (this.outcome === 'client-aborted') this.status = 0;
    }
    this.stream.setWaiting(false);
    if (!this.responseAnswered || this.outcome !== 'proxied') this.stream.cancel();
    if (!this.upstreamEnded) this.upstreamCall?.abort();
    this.timings.finished = performance.now();
    this.deps.onDone({
      id: this.deps.id,
      requestId: this.requestId,
      method: this.req.method ?? 'GET',
      path: this.req.url ?? '/',
      status: this.status,
      outcome: this.outcome ?? 'client-aborted',
      processor: this.role,
      processorHost: this.stream.hostTarget,
      processorAttempts: this.stream.attempts.map((a) => ({ ...a })),
      processorRetries: this.stream.retries,
      endpoints: this.endpoints.map((e) => e.address),
      ...(this.served ? { served: this.served.address } : {}),
      attempts: this.attempts,
      routeCacheCleared: this.routeCacheCleared,
      dynamicMetadata: this.dynamicMetadata,
      notes: this.notes,
      timings: this.timings,
      messages: { sent: this.stream.sent, received: this.stream.received },
    });
  }
}
