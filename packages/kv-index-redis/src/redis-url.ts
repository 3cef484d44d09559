import type { ConnectionOptions } from 'node:tls';
import { isIP } from 'node:net';
import { IndexError } from '@kvix/kv-index';

/** Where and how to connect, from a URL (the forms llm-d's Go client accepts). */
export interface RedisTarget {
  /** TCP host, or undefined for a unix socket. */
  host?: string;
  port?: number;
  /** Unix socket path. */
  path?: string;
  username?: string;
  password?: string;
  db: number;
  /** TLS options for `rediss://` (undefined: plain TCP). */
  tls?: ConnectionOptions;
  /** The URL with its password masked, for logs and errors. */
  display: string;
}

const DEFAULT_PORT = 6379;

/**
 * Parses `redis://[user[:password]@]host[:port][/db]`, `rediss://…` (TLS), `unix://[user[:password]@]/path.sock[?db=N]`,
 * their `valkey://` / `valkeys://` spellings, and a bare `host:port` (taken as redis://). A
 * `password` or `db` query parameter is accepted too.
 */
export function parseRedisUrl(raw: string, tls?: ConnectionOptions): RedisTarget {
  const text = raw.trim();
  if (text === '') throw new IndexError('INVALID_CONFIG', 'redis url is empty');
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text)?.[1]?.toLowerCase();
  if (scheme === undefined) return parseRedisUrl(`redis://${text}`, tls);
  if (scheme === 'unix') return parseUnix(text);
  if (scheme !== 'redis' && scheme !== 'rediss' && scheme !== 'valkey' && scheme !== 'valkeys') {
    throw new IndexError('INVALID_CONFIG', `redis url ${JSON.stringify(mask(text))} has an unsupported scheme ${scheme}:// (use redis://, rediss://, unix://, valkey:// or valkeys://)`);
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new IndexError('INVALID_CONFIG', `redis url ${JSON.stringify(mask(text))} is not a valid URL`);
  }
  if (url.hostname === '') throw new IndexError('INVALID_CONFIG', `redis url ${JSON.stringify(mask(text))} names no host`);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = url.port === '' ? DEFAULT_PORT : Number(url.port);
  const pathDb = url.pathname.replace(/^\//, '');
  const db = dbOf(pathDb !== '' ? pathDb : url.searchParams.get('db'), text);
  const secure = scheme === 'rediss' || scheme === 'valkeys';
  const target: RedisTarget = { host, port, db, display: mask(text) };
  const username = decodeURIComponent(url.username);
  const password = url.password !== '' ? decodeURIComponent(url.password) : url.searchParams.get('password');
  if (username !== '') target.username = username;
  if (password !== null && password !== '') target.password = password;
  // SNI carries a name, never an address.
  if (secure) target.tls = { ...(isIP(host) === 0 ? { servername: host } : {}), ...tls };
  return target;
}

function parseUnix(text: string): RedisTarget {
  const m = /^unix:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?(\/[^?#]*)(?:\?([^#]*))?$/i.exec(text);
  if (m === null) throw new IndexError('INVALID_CONFIG', `redis url ${JSON.stringify(mask(text))} is not unix:///path/to/redis.sock`);
  const query = new URLSearchParams(m[4] ?? '');
  const target: RedisTarget = { path: decodeURIComponent(m[3]!), db: dbOf(query.get('db'), text), display: mask(text) };
  const username = m[1] ? decodeURIComponent(m[1]) : '';
  const password = m[2] ? decodeURIComponent(m[2]) : query.get('password');
  if (username !== '') target.username = username;
  if (password !== null && password !== '') target.password = password;
  return target;
}

function dbOf(text: string | null, url: string): number {
  if (text === null || text === '') return 0;
  const db = Number(text);
  if (!Number.isInteger(db) || db < 0) throw new IndexError('INVALID_CONFIG', `redis url ${JSON.stringify(mask(url))}: database ${JSON.stringify(text)} is not a non-negative integer`);
  return db;
}

/** The URL with any password replaced by `***`. */
export function mask(url: string): string {
  return url.replace(/(\/\/[^:@/]*:)[^@/]*@/, '$1***@').replace(/([?&]password=)[^&#]*/i, '$1***');
}
