import { request, type Agent, type ClientRequest, type IncomingMessage } from 'node:http';
import type { BodyBuffer } from './body-buffer.js';
import type { Endpoint } from './destination.js';

export interface UpstreamRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[]>;
  /** null when the request has no body. */
  body: BodyBuffer | null;
  endpoints: readonly Endpoint[];
  agent: Agent;
  connectTimeoutMs: number;
  /** The route's `num_retries`: further endpoints tried after the first fails (default: the rest of the list). */
  retries?: number;
}

export interface UpstreamHandlers {
  /** Response headers from `endpoint`; the body streams from `response`. */
  onResponse(response: IncomingMessage, endpoint: Endpoint): void;
  /** `endpoint` refused or failed the connection, or reset it before answering; the next one is tried. */
  onRetriableFailure(endpoint: Endpoint, reason: string): void;
  /** Every attempt failed before an answer. */
  onExhausted(): void;
  /** A connected upstream broke the exchange after its response headers (too late to retry). */
  onReset(endpoint: Endpoint, reason: string): void;
}

export interface UpstreamCall {
  abort(): void;
}

function describe(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ? `${e.code}${e.message && !e.message.includes(e.code) ? ` (${e.message})` : ''}` : String(e.message ?? err);
}

/**
 * Sends the request to each endpoint in turn until one answers, as the route's retry policy in
 * deploy/envoy/envoy.yaml has Envoy do (`connect-failure,refused-stream,reset`, `num_retries`):
 * a connection that fails, or is reset before the response headers, moves on to the next
 * endpoint; once the headers are in, a failure is the exchange's. The body is replayed from its
 * start on every attempt.
 */
export function forwardUpstream(req: UpstreamRequest, handlers: UpstreamHandlers): UpstreamCall {
  let aborted = false;
  let current: ClientRequest | undefined;
  let stopBody: () => void = () => {};

  const lastIndex = Math.min(req.endpoints.length - 1, req.retries ?? req.endpoints.length - 1);
  const attempt = (index: number, staleRetry: boolean): void => {
    const endpoint = index <= lastIndex ? req.endpoints[index] : undefined;
    if (endpoint === undefined) {
      handlers.onExhausted();
      return;
    }
    let connected = false;
    let responded = false;
    let connectTimer: NodeJS.Timeout | undefined;
    const cr = request({ host: endpoint.host, port: endpoint.port, method: req.method, path: req.path, headers: req.headers, agent: req.agent, setHost: false });
    current = cr;
    cr.on('socket', (socket) => {
      if (!socket.connecting) {
        connected = true;
        return;
      }
      connectTimer = setTimeout(() => cr.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })), req.connectTimeoutMs);
      socket.once('connect', () => {
        connected = true;
        clearTimeout(connectTimer);
      });
    });
    cr.on('response', (res) => {
      responded = true;
      let broken = false;
      const onBroken = (reason: string) => {
        if (broken || aborted) return;
        broken = true;
        handlers.onReset(endpoint, reason);
      };
      res.on('aborted', () => onBroken('upstream reset during the response body'));
      res.on('error', (err) => onBroken(describe(err)));
      handlers.onResponse(res, endpoint);
    });
    cr.on('error', (err) => {
      clearTimeout(connectTimer);
      if (aborted || responded) return;
      stopBody();
      // A pooled keep-alive connection the upstream had already closed is not the endpoint's
      // failure: try it again once on a fresh connection.
      if (connected && cr.reusedSocket && !staleRetry && (err as NodeJS.ErrnoException).code === 'ECONNRESET') {
        attempt(index, true);
      } else {
        handlers.onRetriableFailure(endpoint, connected ? `reset before the response: ${describe(err)}` : describe(err));
        attempt(index + 1, false);
      }
    });

    if (req.body === null) {
      cr.end();
      return;
    }
    stopBody = req.body.subscribe(
      (chunk) => {
        if (!cr.destroyed) cr.write(chunk);
      },
      () => {
        if (!cr.destroyed) cr.end();
      },
    );
  };

  attempt(0, false);
  return {
    abort() {
      if (aborted) return;
      aborted = true;
      stopBody();
      current?.destroy();
    },
  };
}
