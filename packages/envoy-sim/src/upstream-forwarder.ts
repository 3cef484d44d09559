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
}

export interface UpstreamHandlers {
  /** Response headers from `endpoint`; the body streams from `response`. */
  onResponse(response: IncomingMessage, endpoint: Endpoint): void;
  /** A connection to `endpoint` could not be made; the next one is tried. */
  onConnectFailure(endpoint: Endpoint, reason: string): void;
  /** Every endpoint failed to connect. */
  onExhausted(): void;
  /** A connected upstream reset or broke the exchange (before or after its headers). */
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
 * Sends the request to each endpoint in turn until one accepts the connection, the retry a GIE
 * proxy owes an ordered destination list. Only connection failures move on: once connected, a
 * failure is the exchange's (Envoy would need a retry policy to go further). The body is replayed
 * from its start on every attempt.
 */
export function forwardUpstream(req: UpstreamRequest, handlers: UpstreamHandlers): UpstreamCall {
  let aborted = false;
  let current: ClientRequest | undefined;
  let stopBody: () => void = () => {};

  const attempt = (index: number, staleRetry: boolean): void => {
    const endpoint = req.endpoints[index];
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
      } else if (!connected) {
        handlers.onConnectFailure(endpoint, describe(err));
        attempt(index + 1, false);
      } else {
        handlers.onReset(endpoint, describe(err));
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
