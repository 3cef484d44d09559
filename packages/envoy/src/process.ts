import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ENVOY_INSTALL_HINT, findEnvoy } from './binary.js';
import type { EnvoyConfig } from './config.js';
import { EnvoyError } from './errors.js';

export type EnvoyLogLevel = 'trace' | 'debug' | 'info' | 'warning' | 'error' | 'critical' | 'off';

export interface StartEnvoyOptions {
  /** The bootstrap configuration: data, or YAML text. */
  config: EnvoyConfig | string;
  /** The binary (default: `findEnvoy()`). */
  bin?: string;
  /** Default `warning`: Envoy's info log is a line per cluster and listener. */
  logLevel?: EnvoyLogLevel;
  /** e.g. `ext_proc:debug,router:debug`. */
  componentLogLevel?: string;
  /** Worker threads (default 1: a test or local stack needs no more). */
  concurrency?: number;
  /** How long to wait for the admin API to report LIVE (default 30 s). */
  readyTimeoutMs?: number;
  /** Each chunk Envoy writes to stdout or stderr, as it comes. */
  onOutput?: (text: string) => void;
  extraArgs?: readonly string[];
}

export interface HostStatus {
  /** `ip:port` */
  address: string;
  /** No health flag set: active health check passing and not ejected by outlier detection. */
  healthy: boolean;
  failedActiveHealthCheck: boolean;
  failedOutlierCheck: boolean;
}

const KEPT_OUTPUT = 256 * 1024;

/**
 * A running Envoy, started with a unique base id (`--use-dynamic-base-id`, so several run on one
 * machine) and its admin address written to a file (so the admin port may be 0). Ports the
 * configuration left at 0 are read back from the admin API.
 */
export class EnvoyProcess {
  private out = '';
  private ports = new Map<string, number>();
  readonly exited: Promise<number | string>;

  private constructor(
    readonly child: ChildProcess,
    readonly bin: string,
    private readonly dir: string,
    onOutput: ((text: string) => void) | undefined,
  ) {
    const keep = (b: Buffer): void => {
      const text = b.toString();
      this.out = (this.out + text).slice(-KEPT_OUTPUT);
      onOutput?.(text);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
    const killOnExit = (): void => void child.kill('SIGKILL');
    process.once('exit', killOnExit);
    void this.exited.then(() => {
      process.off('exit', killOnExit);
      rmSync(dir, { recursive: true, force: true });
    });
  }

  /** @throws EnvoyError ENVOY_NOT_FOUND, ENVOY_START_FAILED */
  static async start(options: StartEnvoyOptions): Promise<EnvoyProcess> {
    const bin = options.bin ?? findEnvoy()?.path;
    if (!bin) throw new EnvoyError('ENVOY_NOT_FOUND', `Envoy is not installed: ${ENVOY_INSTALL_HINT}`);
    const dir = mkdtempSync(join(tmpdir(), 'kvix-envoy-'));
    const file = join(dir, 'envoy.yaml');
    writeFileSync(file, typeof options.config === 'string' ? options.config : stringify(options.config));
    const adminPath = join(dir, 'admin-address');
    const args = [
      '-c', file,
      '--use-dynamic-base-id', '--base-id-path', join(dir, 'base-id'),
      '--admin-address-path', adminPath,
      '--concurrency', String(options.concurrency ?? 1),
      '-l', options.logLevel ?? 'warning',
      ...(options.componentLogLevel ? ['--component-log-level', options.componentLogLevel] : []),
      ...(options.extraArgs ?? []),
    ];
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const envoy = new EnvoyProcess(child, bin, dir, options.onOutput);
    const failed = (why: string): EnvoyError => new EnvoyError('ENVOY_START_FAILED', `Envoy (${bin}) ${why}: ${envoy.out.trim().split('\n').slice(-6).join(' | ')}`);
    let exitedEarly: number | string | null = null;
    void envoy.exited.then((code) => (exitedEarly = code));
    const deadline = Date.now() + (options.readyTimeoutMs ?? 30_000);
    for (;;) {
      if (exitedEarly !== null) throw failed(`exited with ${exitedEarly} while starting`);
      if (existsSync(adminPath)) {
        const admin = readFileSync(adminPath, 'utf8').trim();
        if (admin !== '') {
          envoy.adminUrl = `http://${admin}`;
          const ready = await fetch(`${envoy.adminUrl}/ready`).then((r) => r.status === 200, () => false);
          if (ready) break;
        }
      }
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw failed('was not ready in time');
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    await envoy.readListeners();
    return envoy;
  }

  /** The admin API, e.g. `http://127.0.0.1:40123`. */
  adminUrl = '';

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** The port a listener is bound to (default: `inference`, the shipped configuration's). */
  port(listener = 'inference'): number {
    const port = this.ports.get(listener);
    if (port === undefined) throw new EnvoyError('ENVOY_ADMIN', `Envoy has no listener named "${listener}" (it has: ${[...this.ports.keys()].join(', ')})`);
    return port;
  }

  /** `http://127.0.0.1:<port>` of a listener. */
  url(listener = 'inference'): string {
    return `http://127.0.0.1:${this.port(listener)}`;
  }

  /** Everything Envoy wrote so far (its last 256 KiB). */
  output(): string {
    return this.out;
  }

  /** Counters and gauges by name (histograms left out); `filter` keeps matching names. */
  async stats(filter?: RegExp): Promise<Map<string, number>> {
    const res = await fetch(`${this.adminUrl}/stats?format=json`);
    const body = (await res.json()) as { stats?: { name?: string; value?: number }[] };
    const out = new Map<string, number>();
    for (const s of body.stats ?? []) if (s.name !== undefined && typeof s.value === 'number' && (!filter || filter.test(s.name))) out.set(s.name, s.value);
    return out;
  }

  /** One counter or gauge (0 when Envoy has not created it). */
  async stat(name: string): Promise<number> {
    const res = await fetch(`${this.adminUrl}/stats?format=json&filter=${encodeURIComponent(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`)}`);
    const body = (await res.json()) as { stats?: { name?: string; value?: number }[] };
    return body.stats?.find((s) => s.name === name)?.value ?? 0;
  }

  /** The hosts of a cluster with their health, as the admin API's /clusters reports them. */
  async hosts(cluster: string): Promise<HostStatus[]> {
    const res = await fetch(`${this.adminUrl}/clusters?format=json`);
    type Status = { address?: { socket_address?: { address?: string; port_value?: number } }; health_status?: Record<string, unknown> };
    const body = (await res.json()) as { cluster_statuses?: { name?: string; host_statuses?: Status[] }[] };
    const found = body.cluster_statuses?.find((c) => c.name === cluster);
    if (!found) throw new EnvoyError('ENVOY_ADMIN', `Envoy has no cluster named "${cluster}"`);
    return (found.host_statuses ?? []).map((h) => {
      const sa = h.address?.socket_address ?? {};
      const health = h.health_status ?? {};
      const failedActiveHealthCheck = health['failed_active_health_check'] === true;
      const failedOutlierCheck = health['failed_outlier_check'] === true;
      const flagged = Object.entries(health).some(([k, v]) => k !== 'eds_health_status' && v === true);
      const eds = health['eds_health_status'];
      return { address: `${sa.address ?? ''}:${sa.port_value ?? 0}`, healthy: !flagged && (eds === undefined || eds === 'HEALTHY'), failedActiveHealthCheck, failedOutlierCheck };
    });
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
  async stop(graceMs = 5000): Promise<number | string> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.exited;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    const result = await this.exited;
    clearTimeout(timer);
    return result;
  }

  private async readListeners(): Promise<void> {
    const res = await fetch(`${this.adminUrl}/listeners?format=json`);
    const body = (await res.json()) as { listener_statuses?: { name?: string; local_address?: { socket_address?: { port_value?: number } } }[] };
    for (const l of body.listener_statuses ?? []) {
      const port = l.local_address?.socket_address?.port_value;
      if (l.name !== undefined && port !== undefined) this.ports.set(l.name, port);
    }
  }
}

export interface ValidationResult {
  ok: boolean;
  /** Envoy's own words, e.g. the field it rejected. */
  output: string;
  /** Lines about deprecated fields (validation passes with them, but they will go). */
  deprecated: string[];
}

/** `envoy --mode validate`: parses and checks the configuration without starting anything. */
export function validateEnvoyConfig(config: EnvoyConfig | string, bin: string | undefined = findEnvoy()?.path): ValidationResult {
  if (!bin) throw new EnvoyError('ENVOY_NOT_FOUND', `Envoy is not installed: ${ENVOY_INSTALL_HINT}`);
  const dir = mkdtempSync(join(tmpdir(), 'kvix-envoy-validate-'));
  try {
    const file = join(dir, 'envoy.yaml');
    writeFileSync(file, typeof config === 'string' ? config : stringify(config));
    const run = spawnSync(bin, ['--mode', 'validate', '-c', file, '--use-dynamic-base-id', '-l', 'warning'], { encoding: 'utf8', timeout: 60_000 });
    const output = `${run.stdout ?? ''}${run.stderr ?? ''}`;
    return { ok: run.status === 0, output, deprecated: output.split('\n').filter((l) => /deprecated/i.test(l)) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
