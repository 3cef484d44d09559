/**
 * What every kvix HTTP listener shares beyond its routes: bounds on what one client can make it
 * hold (body size, connections, how long headers and bodies may take), optional TLS (mutual when
 * a client CA is given) and optional bearer-token auth. Configuration keys sit under the
 * listener's own key (`gateway.maxBodyBytes`, `metrics.tls.certFile`, `http.authTokenFile`, …).
 */
import { readFileSync } from 'node:fs';
import type { Server as HttpServer } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ConfigError } from './config.js';
import { errorBody } from './http-errors.js';

/** A server certificate and key (PEM files); with a client CA, clients must present a certificate it signed. */
export const TlsServerSchema = z
  .object({
    certFile: z.string().min(1),
    keyFile: z.string().min(1),
    /** Require and verify client certificates against this CA bundle (mutual TLS). */
    clientCaFile: z.string().min(1).optional(),
  })
  .strict();
export type TlsServerSettings = z.output<typeof TlsServerSchema>;

/** How a kvix client verifies a TLS server, and the certificate it presents for mutual TLS. */
export const TlsClientSchema = z
  .object({
    /** CA bundle the server's certificate must chain to (default: the system's roots). */
    caFile: z.string().min(1).optional(),
    /** Client certificate and key, for servers that require mutual TLS. */
    certFile: z.string().min(1).optional(),
    keyFile: z.string().min(1).optional(),
    /** The name the server's certificate must carry, when it differs from the host dialled. */
    serverName: z.string().min(1).optional(),
  })
  .strict()
  .refine((t) => (t.certFile === undefined) === (t.keyFile === undefined), { message: 'certFile and keyFile go together' });
export type TlsClientSettings = z.output<typeof TlsClientSchema>;

export interface HttpLimits {
  /** Largest request body accepted (413 beyond). */
  maxBodyBytes: number;
  /** Open connections at once; further ones are closed on accept. */
  maxConnections: number;
  /** Time a client has to send a request's headers. */
  headersTimeoutMs: number;
  /** Time a client has to send a whole request, body included (408 after). */
  bodyTimeoutMs: number;
}

/**
 * The keys of a listener's limits, TLS and auth, with per-listener defaults, to spread into the
 * listener's own schema. Node's own defaults would let a client take 300 s to send a body, and a
 * listener hold any number of connections.
 */
export function httpListenerFields(defaults: Partial<HttpLimits> & { maxBodyBytes: number }) {
  return {
    maxBodyBytes: z.number().int().min(1024).default(defaults.maxBodyBytes),
    maxConnections: z.number().int().min(1).default(defaults.maxConnections ?? 1024),
    headersTimeoutMs: z.number().int().min(100).default(defaults.headersTimeoutMs ?? 10_000),
    bodyTimeoutMs: z.number().int().min(100).default(defaults.bodyTimeoutMs ?? 30_000),
    tls: TlsServerSchema.optional(),
    /** A file holding the bearer token every request but the probes must carry (`Authorization: Bearer …`). */
    authTokenFile: z.string().min(1).optional(),
  };
}

export type HttpListenerSettings = HttpLimits & { tls?: TlsServerSettings | undefined; authTokenFile?: string | undefined };

function readFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`cannot read ${what} ${path}: ${(err as Error).message}`);
  }
}

/** The PEM files of a server TLS setting, read (a missing file is a configuration error naming it). */
export function tlsServerOptions(tls: TlsServerSettings): { cert: Buffer; key: Buffer; ca?: Buffer; requestCert: boolean; rejectUnauthorized: boolean } {
  const out = { cert: readFile(tls.certFile, 'TLS certificate'), key: readFile(tls.keyFile, 'TLS key'), requestCert: false, rejectUnauthorized: false };
  if (tls.clientCaFile === undefined) return out;
  return { ...out, ca: readFile(tls.clientCaFile, 'TLS client CA'), requestCert: true, rejectUnauthorized: true };
}

/** The PEM files of a client TLS setting, for node:https / node:tls. */
export function tlsClientOptions(tls: TlsClientSettings): { ca?: Buffer; cert?: Buffer; key?: Buffer; servername?: string } {
  return {
    ...(tls.caFile !== undefined ? { ca: readFile(tls.caFile, 'TLS CA') } : {}),
    ...(tls.certFile !== undefined ? { cert: readFile(tls.certFile, 'TLS client certificate') } : {}),
    ...(tls.keyFile !== undefined ? { key: readFile(tls.keyFile, 'TLS client key') } : {}),
    ...(tls.serverName !== undefined ? { servername: tls.serverName } : {}),
  };
}

/** Reads a token file (trimmed); an empty one is a configuration error, never "no auth". */
export function readTokenFile(path: string): string {
  const token = readFile(path, 'token file').toString('utf8').trim();
  if (token === '') throw new ConfigError(`token file ${path} is empty`);
  return token;
}

/** How often Node checks header and body timeouts (its default, 30 s, lets a slow body outlive its timeout by that much). */
function checkingIntervalOf(limits: HttpLimits): number {
  return Math.max(50, Math.min(1000, Math.floor(limits.headersTimeoutMs / 2)));
}

/** Node refuses a headers timeout longer than the whole request's. */
function headersTimeoutOf(limits: HttpLimits): number {
  return Math.min(limits.headersTimeoutMs, limits.bodyTimeoutMs);
}

/** Options for Fastify that apply a listener's limits and TLS. */
export function fastifyListenerOptions(settings: HttpListenerSettings): Record<string, unknown> {
  const http = { headersTimeout: headersTimeoutOf(settings), connectionsCheckingInterval: checkingIntervalOf(settings) };
  return {
    bodyLimit: settings.maxBodyBytes,
    requestTimeout: settings.bodyTimeoutMs,
    ...(settings.tls ? { https: { ...tlsServerOptions(settings.tls), ...http } } : { http }),
  };
}

/** Options for node:http / node:https `createServer` applying a listener's limits and TLS. */
export function nodeServerOptions(settings: HttpListenerSettings): Record<string, unknown> {
  return {
    headersTimeout: headersTimeoutOf(settings),
    requestTimeout: settings.bodyTimeoutMs,
    connectionsCheckingInterval: checkingIntervalOf(settings),
    ...(settings.tls ? tlsServerOptions(settings.tls) : {}),
  };
}

/** The limits that are server properties rather than constructor options. */
export function limitConnections(server: Pick<HttpServer, 'maxConnections'>, settings: Pick<HttpLimits, 'maxConnections'>): void {
  server.maxConnections = settings.maxConnections;
}

/** Routes a bearer-token listener still answers without one: Kubernetes probes carry no token. */
export const UNAUTHENTICATED_ROUTES: readonly string[] = ['/healthz', '/readyz'];

function sameToken(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Requires `Authorization: Bearer <token>` on every route but `open` (401 otherwise, with the
 * common error body). Prometheus sends one with `authorization: { credentials_file: … }`.
 */
export function requireBearerToken(app: FastifyInstance, token: string, open: readonly string[] = UNAUTHENTICATED_ROUTES): void {
  const expected = `Bearer ${token}`;
  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    if (open.includes(req.url.split('?')[0]!)) return;
    const given = req.headers.authorization;
    if (typeof given === 'string' && sameToken(given, expected)) return;
    await reply.code(401).header('www-authenticate', 'Bearer').send(errorBody('UNAUTHENTICATED', 'this listener requires a bearer token (Authorization: Bearer …)'));
  });
}

/** Applies what is not a constructor option: the connection limit and, when configured, the token. */
export function secureFastifyListener(app: FastifyInstance, settings: HttpListenerSettings): void {
  limitConnections(app.server, settings);
  if (settings.authTokenFile !== undefined) requireBearerToken(app, readTokenFile(settings.authTokenFile));
}
