import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitFor } from './ports.js';
import { spawnProcess, type ManagedProcess } from './processes.js';

/**
 * A private server process (redis-server, nats-server) on a free port, owned by one test file.
 * `restart()` brings it back on the same port (and, for NATS, the same JetStream store), which is
 * what "Redis/NATS restarted mid-traffic" tests need.
 */
export interface PrivateServer {
  readonly port: number;
  /** The URL clients dial (`redis://127.0.0.1:<port>`, `nats://127.0.0.1:<port>`). */
  readonly url: string;
  /** Stops the server (SIGTERM; data directory kept so `start()` resumes it). */
  stop(): Promise<void>;
  /** Starts it again on the same port after `stop()`. */
  start(): Promise<void>;
  restart(): Promise<void>;
  /** Stops it and deletes its data directory. */
  dispose(): Promise<void>;
  output(): string;
}

class MissingServerError extends Error {
  constructor(binary: string) {
    super(`${binary} is not installed: scripts/install-prerequisites.sh installs it (with the other real parts the tests run)`);
  }
}

function requireBinary(binary: string): void {
  const found = (process.env.PATH ?? '').split(':').some((dir) => {
    if (!dir) return false;
    try {
      accessSync(join(dir, binary), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
  if (!found) throw new MissingServerError(binary);
}

function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function privateServer(binary: string, scheme: string, argsFor: (port: number, dir: string) => string[], port: number): PrivateServer {
  requireBinary(binary);
  const dir = mkdtempSync(join(tmpdir(), `kvix-${binary}-`));
  let proc: ManagedProcess | undefined;
  let log = '';
  const server: PrivateServer = {
    port,
    url: `${scheme}://127.0.0.1:${port}`,
    async start() {
      if (proc) return;
      const p = spawnProcess(binary, argsFor(port, dir));
      proc = p;
      void p.exited.then(() => {
        log += p.output();
        if (proc === p) proc = undefined;
      });
      await waitFor(async () => (proc === undefined ? Promise.reject(new Error(`${binary} exited: ${log.slice(-400)}`)) : tcpOpen(port)), 15_000, `${binary} on port ${port}`);
    },
    async stop() {
      const p = proc;
      if (!p) return;
      proc = undefined;
      await p.stop('SIGTERM', 5000);
      log += p.output();
    },
    async restart() {
      await server.stop();
      await server.start();
    },
    async dispose() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
    output: () => log + (proc?.output() ?? ''),
  };
  return server;
}

/** A private redis-server (no persistence, no protected mode) on a free port, started. */
export async function startRedis(options: { port?: number; extraArgs?: string[] } = {}): Promise<PrivateServer> {
  const port = options.port ?? (await freePort());
  const server = privateServer(
    'redis-server',
    'redis',
    (p, dir) => ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--protected-mode', 'no', ...(options.extraArgs ?? [])],
    port,
  );
  await server.start();
  return server;
}

/** A private nats-server with JetStream (file store in a private directory kept across restarts) on a free port, started. */
export async function startNats(options: { port?: number; jetstream?: boolean; extraArgs?: string[] } = {}): Promise<PrivateServer> {
  const port = options.port ?? (await freePort());
  const server = privateServer(
    'nats-server',
    'nats',
    (p, dir) => ['-a', '127.0.0.1', '-p', String(p), ...(options.jetstream === false ? [] : ['-js', '-sd', dir]), ...(options.extraArgs ?? [])],
    port,
  );
  await server.start();
  return server;
}

/**
 * A private Prometheus (the Debian `prometheus` package's binary) on a free loopback port, started
 * with `config` (prometheus.yml text; rule file paths in it are absolute) and a throw-away TSDB.
 */
export async function startPrometheus(config: string, options: { port?: number } = {}): Promise<PrivateServer> {
  const port = options.port ?? (await freePort());
  const server = privateServer(
    'prometheus',
    'http',
    (p, dir) => {
      writeFileSync(join(dir, 'prometheus.yml'), config);
      return ['--config.file', join(dir, 'prometheus.yml'), '--storage.tsdb.path', join(dir, 'data'), '--web.listen-address', `127.0.0.1:${p}`, '--log.level', 'warn'];
    },
    port,
  );
  await server.start();
  return server;
}
