import { Agent, createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { RequestDirector, RoutedRequest } from '@kvix/scheduler';
import { limitConnections, nodeServerOptions, type HttpLimits, type TlsServerSettings } from '@kvix/service-kit';
import { RequestTrace } from '@kvix/telemetry';
import type { Logger } from 'pino';

export interface GatewayOptions extends HttpLimits {
  host: string;
  port: number;
  connectTimeoutMs: number;
  /**
   * Bytes of request bodies held at once, across all requests (being read, or kept for a retry
   * until their answer ends): beyond it new requests get 503, so no number of clients sending
   * large bodies can exhaust memory.
   */
  maxBufferedBytes: number;
  tls?: TlsServerSettings | undefined;
  director: RequestDirector;
  logger: Logger;
  /** With `--routing-workers`: this worker's id, named in `x-kvix-worker` on every routed response. */
  workerId?: string;
}

/** Headers that describe one hop and are not forwarded. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host', 'content-length']);
/** Failures before the request reached the endpoint: safe to try the next one. */
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND', 'CONNECT_TIMEOUT']);
/**
 * How a pooled connection the endpoint closed while idle fails the next request sent on it. The
 * request never reached the engine, so it is sent again once on a fresh connection.
 */
const STALE_SOCKET_ERRORS = new Set(['ECONNRESET', 'EPIPE']);
/**
 * Idle client connections are kept this long: longer than the idle timeouts of the proxies and
 * load balancers usually put in front (60 s), so it is the client that closes them, never a race
 * between its next request and our close.
 */
const CLIENT_KEEP_ALIVE_MS = 65_000;

export const ENDPOINT_HEADER = 'x-kvix-endpoint';
export const WORKER_HEADER = 'x-kvix-worker';

/**
 * An OpenAI-compatible reverse proxy that routes each request with the same scheduler as the
 * ext_proc server: for users without Envoy. Streams both ways without buffering responses (the
 * request body is read whole: scheduling needs it), tries the fallback list when the chosen
 * endpoint cannot be reached, and names the endpoint that served in `x-kvix-endpoint`.
 */
export class Gateway {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 256 });
  private readonly active = new Set<ServerResponse>();
  /** Bytes of request bodies held now (see maxBufferedBytes). */
  private buffered = 0;

  private constructor(
    private readonly server: Server,
    private readonly options: GatewayOptions,
  ) {}

  static async start(options: GatewayOptions): Promise<Gateway> {
    // Headers and bodies must arrive within their timeouts (a slow client would otherwise hold its
    // buffer for Node's default 300 s), and connections are capped.
    const serverOptions = { keepAliveTimeout: CLIENT_KEEP_ALIVE_MS, ...nodeServerOptions(options) };
    const server = options.tls ? createTlsServer(serverOptions) : createServer(serverOptions);
    limitConnections(server, options);
    const gateway = new Gateway(server, options);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => gateway.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new Error(`cannot listen for the gateway on ${options.host}:${options.port}: ${err.message}`, { cause: err })));
      server.listen(options.port, options.host, () => resolve());
    });
    return gateway;
  }

  get port(): number {
    const addr = this.server.address();
    return typeof addr === 'object' && addr !== null ? addr.port : this.options.port;
  }

  /** Stops accepting connections, lets requests in flight finish (up to `graceMs`), then cuts the rest. */
  async close(graceMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const deadline = Date.now() + graceMs;
    while (this.active.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const res of this.active) res.destroy();
    this.server.closeAllConnections();
    await closed;
    this.agent.destroy();
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = req.url ?? '/';
    const route = path.split('?')[0]!;
    if (req.method === 'POST' && (route === '/v1/completions' || route === '/v1/chat/completions')) {
      void this.proxy(req, res, path).catch((err: unknown) => {
        this.options.logger.error({ err: (err as Error).message, path }, 'gateway request failed');
        if (!res.headersSent) sendError(res, 500, 'INTERNAL', 'the gateway failed to route the request');
        else res.destroy();
      });
    } else if (req.method === 'GET' && route === '/v1/models') this.models(res);
    else if (req.method === 'GET' && route === '/health') {
      const ready = this.options.director.registry.candidates().length > 0;
      sendJson(res, ready ? 200 : 503, { status: ready ? 'ok' : 'no ready endpoint' });
    } else sendError(res, 404, 'NOT_FOUND', `no route ${req.method} ${route}; the gateway serves POST /v1/completions, POST /v1/chat/completions, GET /v1/models`);
  }

  private models(res: ServerResponse): void {
    const ids = new Set<string>();
    for (const c of this.options.director.registry.candidates()) {
      if (c.endpoint.model) ids.add(c.endpoint.model);
      for (const lora of c.metrics?.loras ?? []) ids.add(lora);
    }
    for (const alias of this.options.director.aliases) ids.add(alias);
    sendJson(res, 200, { object: 'list', data: [...ids].sort().map((id) => ({ id, object: 'model', owned_by: 'kvix' })) });
  }

  private async proxy(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    let held = 0;
    const release = (): void => {
      this.buffered -= held;
      held = 0;
    };
    res.once('close', release);
    const body = await readBody(req, this.options.maxBodyBytes, (bytes) => {
      if (this.buffered + bytes > this.options.maxBufferedBytes) return false;
      this.buffered += bytes;
      held += bytes;
      return true;
    });
    if (body === 'too-large' || body === 'over-budget') {
      release();
      // The rest of the body is not read: the connection closes once the answer is sent.
      res.once('finish', () => req.destroy());
      if (body === 'too-large') return sendError(res, 413, 'BODY_TOO_LARGE', `request bodies are limited to ${this.options.maxBodyBytes} bytes`, { connection: 'close' });
      this.options.logger.warn({ bufferedBytes: this.buffered, limit: this.options.maxBufferedBytes }, 'request refused: the gateway holds its limit of request bodies');
      return sendError(res, 503, 'OVERLOADED', 'the gateway holds as many request bodies as it may; retry shortly', { connection: 'close', 'retry-after': '1' });
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
    // A span per request (continuing the client's traceparent); routing's spans are its children.
    const trace = RequestTrace.start('gateway', req.method ?? 'POST', path, headers);
    const outcome = await trace.run(() => this.options.director.route({ requestId: headers['x-request-id'] ?? null, path, headers, body }));
    if (!outcome.ok) {
      const r = outcome.rejection;
      trace.end(r.status, r.code);
      return sendError(res, r.status, r.code, r.message, r.headers);
    }
    const routed = outcome.routed;
    trace.routed({ 'kvix.request_id': routed.id, 'kvix.model': routed.targetModel, 'kvix.endpoint': routed.endpoints[0]!.id });
    this.active.add(res);
    res.on('close', () => {
      this.active.delete(res);
      routed.finish({ status: res.writableFinished ? res.statusCode : null, ...(res.writableFinished ? {} : { error: 'CLIENT_CLOSED' }) });
      trace.end(res.writableFinished ? res.statusCode : null, res.writableFinished ? undefined : 'CLIENT_CLOSED');
    });
    this.forward(req, res, routed, headers, path, 0, false, trace);
  }

  /** Sends the request to the `index`-th endpoint of the list; a connection failure moves on to the next. */
  private forward(req: IncomingMessage, res: ServerResponse, routed: RoutedRequest, headers: Record<string, string>, path: string, index: number, retried: boolean, trace: RequestTrace): void {
    const endpoint = routed.endpoints[index];
    if (endpoint === undefined) {
      sendError(res, 503, 'NO_ENDPOINTS', `none of the ${routed.endpoints.length} endpoints chosen for this request could be reached`);
      return;
    }
    const body = routed.body ?? Buffer.alloc(0);
    const upstreamHeaders: Record<string, string> = {};
    for (const [k, v] of Object.entries(headers)) if (!HOP_BY_HOP.has(k)) upstreamHeaders[k] = v;
    upstreamHeaders['host'] = endpoint.id;
    upstreamHeaders['content-length'] = String(body.length);
    upstreamHeaders['x-request-id'] = routed.id;
    // With tracing on, the pod sees this call's span as its parent (else the client's traceparent passes as is).
    Object.assign(upstreamHeaders, trace.upstream(endpoint.id, index));
    let connected = false;
    const upstream = httpRequest({ host: endpoint.address, port: endpoint.port, method: req.method, path, headers: upstreamHeaders, agent: this.agent }, (up) => {
      routed.served(endpoint.id);
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
      const stream = routed.responseStream(String(up.headers['content-type'] ?? ''));
      // Aliasing may rewrite the body: its length is only known at the end.
      if (routed.clientModel === routed.targetModel && up.headers['content-length'] !== undefined) out['content-length'] = up.headers['content-length'];
      Object.assign(out, routed.responseHeaders(), { [ENDPOINT_HEADER]: endpoint.id, 'x-request-id': routed.id });
      if (this.options.workerId !== undefined) out[WORKER_HEADER] = this.options.workerId;
      res.writeHead(up.statusCode ?? 502, out);
      res.flushHeaders();
      up.on('data', (chunk: Buffer) => {
        const bytes = stream.push(chunk);
        if (bytes.length > 0 && !res.write(bytes)) {
          up.pause();
          res.once('drain', () => up.resume());
        }
      });
      up.on('end', () => {
        // The pod is done with it: count it out now, not when the client has read the last byte.
        routed.finish({ status: up.statusCode ?? null });
        res.end(stream.end());
      });
      up.on('error', () => res.destroy());
      res.on('close', () => up.destroy());
    });
    const timer = setTimeout(() => upstream.destroy(Object.assign(new Error('connect timeout'), { code: 'CONNECT_TIMEOUT' })), this.options.connectTimeoutMs);
    upstream.on('socket', (socket) => {
      if (!socket.connecting) {
        connected = true;
        clearTimeout(timer);
      } else
        socket.once('connect', () => {
          connected = true;
          clearTimeout(timer);
        });
    });
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (res.headersSent) return res.destroy();
      const code = err.code ?? 'ERROR';
      if (upstream.reusedSocket && !retried && STALE_SOCKET_ERRORS.has(code)) {
        this.options.logger.debug({ request: routed.id, endpoint: endpoint.id, code }, 'pooled connection was closed by the endpoint; sending again on a new one');
        return this.forward(req, res, routed, headers, path, index, true, trace);
      }
      if (!connected && CONNECT_ERRORS.has(code)) {
        routed.unreachable(endpoint.id, `gateway could not connect: ${code}`);
        this.options.logger.warn({ request: routed.id, endpoint: endpoint.id, code, next: routed.endpoints[index + 1]?.id ?? null }, 'endpoint unreachable; trying the next one');
        return this.forward(req, res, routed, headers, path, index + 1, false, trace);
      }
      sendError(res, 502, 'UPSTREAM_ERROR', `endpoint ${endpoint.id} failed: ${err.message}`);
    });
    res.on('close', () => {
      clearTimeout(timer);
      if (!res.writableFinished) upstream.destroy();
    });
    upstream.end(body);
  }
}

/**
 * The whole body; 'too-large' when it exceeds `limit` (a declared content-length says so before
 * anything is read), 'over-budget' when `reserve` refuses the bytes (the gateway's total).
 */
function readBody(req: IncomingMessage, limit: number, reserve: (bytes: number) => boolean): Promise<Buffer | 'too-large' | 'over-budget'> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) return resolve('too-large');
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = (outcome: 'too-large' | 'over-budget'): void => {
      req.removeAllListeners('data');
      req.pause();
      resolve(outcome);
    };
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) return stop('too-large');
      if (!reserve(c.length)) return stop('over-budget');
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** OpenAI's error shape, with kvix's code. */
function sendError(res: ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}): void {
  if (res.headersSent) return void res.destroy();
  sendJson(res, status, { error: { message, type: status >= 500 ? 'server_error' : 'invalid_request_error', code } }, headers);
}
