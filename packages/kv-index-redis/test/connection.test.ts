import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { entriesAt, type PodEntry } from '@kvix/kv-index';
import { freePort, startRedis, waitFor, type PrivateServer } from '@kvix/test-support';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { parseRedisUrl, RedisIndex, type BackendOperation, type RedisIndexConfig } from '../src/index.js';

const servers: PrivateServer[] = [];
const open: RedisIndex[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((i) => i.close()));
  await Promise.all(servers.splice(0).map((s) => s.dispose()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function server(extraArgs: string[] = []): Promise<PrivateServer> {
  const s = await startRedis({ extraArgs });
  servers.push(s);
  return s;
}

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'kvix-redis-test-'));
  dirs.push(d);
  return d;
}

function index(config: RedisIndexConfig): RedisIndex {
  const i = new RedisIndex({ sweepIntervalMs: 0, ...config });
  open.push(i);
  return i;
}

const gpu = (pod: string): PodEntry => ({ pod, tier: 'gpu', speculative: false });
const R = (...v: bigint[]): BigUint64Array => BigUint64Array.from(v);

describe('redis URLs', () => {
  it('parses redis://, rediss://, unix:// and valkey:// forms, masking the password', () => {
    expect(parseRedisUrl('redis://user:s3cret@cache.local:6380/2')).toEqual({ host: 'cache.local', port: 6380, db: 2, username: 'user', password: 's3cret', display: 'redis://user:***@cache.local:6380/2' });
    expect(parseRedisUrl('10.0.0.5:7000')).toMatchObject({ host: '10.0.0.5', port: 7000, db: 0 });
    expect(parseRedisUrl('redis://[::1]')).toMatchObject({ host: '::1', port: 6379 });
    expect(parseRedisUrl('rediss://cache.example.com')).toMatchObject({ host: 'cache.example.com', tls: { servername: 'cache.example.com' } });
    expect(parseRedisUrl('rediss://127.0.0.1:6390').tls).toEqual({});
    expect(parseRedisUrl('valkeys://v:1').tls).toBeDefined();
    expect(parseRedisUrl('valkey://v:1')).toMatchObject({ host: 'v', port: 1 });
    expect(parseRedisUrl('unix:///run/redis.sock?db=4&password=pw')).toEqual({ path: '/run/redis.sock', db: 4, password: 'pw', display: 'unix:///run/redis.sock?db=4&password=***' });
    expect(parseRedisUrl('unix://u:pw@/run/redis.sock')).toMatchObject({ path: '/run/redis.sock', username: 'u', password: 'pw' });
    for (const bad of ['', 'http://h:1', 'redis://h:1/x', 'unix://relative.sock', 'redis://']) {
      expect(() => parseRedisUrl(bad), bad).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG' }));
    }
  });

  it('connects over a unix socket', async () => {
    const sock = join(tempDir(), 'redis.sock');
    await server(['--unixsocket', sock, '--unixsocketperm', '700']);
    const idx = index({ url: `unix://${sock}?db=1` });
    await idx.ready();
    await idx.add(null, R(1n), [gpu('a:1')]);
    expect(entriesAt(await idx.lookup(R(1n)), 0)).toEqual([gpu('a:1')]);
    const raw = new Redis({ path: sock, db: 1 });
    expect(await raw.exists('1')).toBe(1);
    raw.disconnect();
  });

  it('authenticates with the URL\'s password and selects its database', async () => {
    const s = await server(['--requirepass', 'pw']);
    const idx = index({ url: `redis://:pw@127.0.0.1:${s.port}/5` });
    await idx.ready();
    await idx.add(null, R(9n), [gpu('a:1')]);
    const raw = new Redis({ port: s.port, password: 'pw', db: 5 });
    expect(await raw.exists('9')).toBe(1);
    raw.disconnect();
  });

  it('stays unavailable, with the server\'s reason, when the password is wrong', async () => {
    const s = await server(['--requirepass', 'pw']);
    const idx = index({ url: `redis://:nope@127.0.0.1:${s.port}` });
    await expect(idx.ready(1500)).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE', message: expect.stringMatching(/WRONGPASS|invalid|password/i) });
    await expect(idx.lookup(R(1n))).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    expect(idx.target.display).not.toContain('nope');
  });

  it('speaks TLS on rediss://', async () => {
    const dir = tempDir();
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    // openssl ships with the machine (Debian): a throwaway certificate for 127.0.0.1.
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    const tlsPort = await freePort();
    await server(['--tls-port', String(tlsPort), '--tls-cert-file', cert, '--tls-key-file', key, '--tls-ca-cert-file', cert, '--tls-auth-clients', 'no']);
    const idx = index({ url: `rediss://127.0.0.1:${tlsPort}`, tls: { ca: readFileSync(cert) } });
    await idx.ready();
    await idx.add(null, R(3n), [gpu('a:1')]);
    expect((await idx.lookup(R(3n))).keyCount).toBe(1);
    // Without the CA the server's certificate is refused.
    const untrusting = index({ url: `rediss://127.0.0.1:${tlsPort}` });
    await expect(untrusting.ready(1500)).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
  });
});

describe('Redis going away', () => {
  it('fails fast with BACKEND_UNAVAILABLE, counts and logs it once, and serves again when Redis is back', async () => {
    const s = await server();
    const up: boolean[] = [];
    const errors: BackendOperation[] = [];
    const logs: string[] = [];
    const idx = index({
      url: s.url,
      health: { up: (u) => up.push(u), error: (op) => errors.push(op) },
      logger: { info: (_o, msg) => logs.push(`info ${msg}`), warn: (_o, msg) => logs.push(`warn ${msg}`) },
    });
    let losses = 0;
    idx.onDataLoss(() => losses++);
    await idx.ready();
    await idx.add(null, R(1n, 2n), [gpu('a:1')]);
    expect(up).toEqual([false, true]);

    await s.stop();
    await waitFor(() => !idx.isUp, 5000, 'the index to see Redis gone');
    const failures = await Promise.allSettled([idx.lookup(R(1n)), idx.add(null, R(3n), [gpu('a:1')]), idx.evict(1n, 'request', [gpu('a:1')]), idx.requestKeyFor(1n), idx.clear('a:1'), idx.stats()]);
    for (const f of failures) {
      expect(f.status).toBe('rejected');
      expect((f as PromiseRejectedResult).reason).toMatchObject({ code: 'BACKEND_UNAVAILABLE', message: expect.stringContaining(s.url) });
    }
    expect(errors).toEqual(['lookup', 'add', 'evict', 'resolve', 'clear', 'stats']);
    expect(up.at(-1)).toBe(false);

    await s.start();
    // The same index object reconnects by itself.
    await idx.ready(10_000);
    expect(up.at(-1)).toBe(true);
    await idx.add(null, R(5n), [gpu('a:1')]);
    expect(entriesAt(await idx.lookup(R(5n)), 0)).toEqual([gpu('a:1')]);
    expect(logs).toEqual([
      'info redis index connected',
      'warn redis index went away; index operations fail until it returns',
      'info redis index reachable again',
      // No persistence here: the server came back empty, and whoever feeds the index is told.
      'warn redis no longer holds the index (restarted empty, flushed or failed over): it is rebuilt from the engines',
    ]);
    expect(losses).toBe(1);
  });

  it('starts unavailable when Redis is not there yet, then connects on its own', async () => {
    const port = await freePort();
    const logs: string[] = [];
    const idx = index({ url: `redis://127.0.0.1:${port}`, maxReconnectDelayMs: 100, logger: { info: (_o, msg) => logs.push(`info ${msg}`), warn: (_o, msg) => logs.push(`warn ${msg}`) } });
    await expect(idx.lookup(R(1n))).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    await waitFor(() => logs.length > 0, 5000, 'the first connection attempt to fail');
    servers.push(await startRedis({ port }));
    await idx.ready(10_000);
    expect((await idx.lookup(R(1n))).keyCount).toBe(0);
    expect(logs).toEqual(['warn redis index unreachable; index operations fail until it is reachable', 'info redis index connected']);
  });

  it('fails a command the server does not answer within commandTimeoutMs, and keeps serving', async () => {
    const s = await server(['--enable-debug-command', 'yes']);
    const errors: BackendOperation[] = [];
    const idx = index({ url: s.url, commandTimeoutMs: 100, health: { error: (op) => errors.push(op) } });
    await idx.ready();
    const raw = new Redis({ port: s.port, retryStrategy: () => null });
    try {
      await raw.ping();
      // The server blocks for a second (long past the timeout) from when this arrives.
      const sleeping = raw.call('DEBUG', 'SLEEP', '1');
      await new Promise((r) => setTimeout(r, 50));
      await expect(idx.lookup(R(1n))).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE', message: expect.stringContaining('timed out') });
      expect(errors).toEqual(['lookup']);
      await sleeping;
    } finally {
      raw.disconnect();
    }
    expect((await idx.lookup(R(1n))).keyCount).toBe(0);
  });

  it('tells whoever feeds the index when the server was flushed under it', async () => {
    const s = await server();
    const idx = index({ url: s.url, sweepIntervalMs: 50 });
    let losses = 0;
    idx.onDataLoss(() => losses++);
    await idx.ready();
    await idx.add(null, R(1n), [gpu('a:1')]);
    const raw = new Redis({ port: s.port });
    await raw.flushall();
    raw.disconnect();
    await waitFor(() => losses === 1, 5000, 'the flush to be noticed');
    await idx.sweepNow();
    expect(losses).toBe(1);
  });

  it('loads its scripts again after the server\'s script cache was flushed', async () => {
    const s = await server();
    const idx = index({ url: s.url });
    await idx.ready();
    const raw = new Redis({ port: s.port });
    await raw.script('FLUSH');
    raw.disconnect();
    await expect(idx.lookup(R(1n))).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE', message: expect.stringContaining('NOSCRIPT') });
    await waitFor(async () => (await idx.lookup(R(1n)).then(() => true, () => false)), 5000, 'the scripts to be loaded again');
    await idx.add(null, R(1n), [gpu('a:1')]);
    expect((await idx.lookup(R(1n))).keyCount).toBe(1);
  });

  it('fails operations of a closed index with CLOSED', async () => {
    const s = await server();
    const idx = index({ url: s.url });
    await idx.ready();
    await idx.close();
    await expect(idx.lookup(R(1n))).rejects.toMatchObject({ code: 'CLOSED' });
  });
});
