import { accessSync, constants, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { UsageError } from '../io.js';
import type { PodSupervisor } from './pod-supervisor.js';

export interface ReplicatedRoutersOptions {
  replicas: number;
  /** An existing NATS with JetStream; null starts a private nats-server. */
  natsUrl: string | null;
  natsPort: number;
  dir: string;
  endpointsFile: string;
  /** Settings every replica shares (scheduler, tokenization), written to a config file. */
  eppConfig: Record<string, unknown>;
  /** Replica i (from 0) serves ext_proc on extProcBase + i and metrics on metricsBase + i. */
  extProcBase: number;
  metricsBase: number;
  publisherPort: number;
  /**
   * With the built-in latency model: one `kvix-latency-predictor` on this port that every replica
   * predicts with and trains (replicas each learning from a third of the traffic would disagree).
   */
  predictorPort: number | null;
  logLevel: string;
  supervisor: PodSupervisor;
  say: (line: string) => void;
}

export interface ReplicatedRouters {
  natsUrl: string;
  publisherUrl: string;
  predictorUrl: string | null;
  replicas: { name: string; extProcPort: number; metricsPort: number }[];
}

const require = createRequire(import.meta.url);
const binOf = (pkg: string, bin: string): string => join(dirname(dirname(require.resolve(pkg))), 'bin', bin);

function onPath(binary: string): boolean {
  return (process.env['PATH'] ?? '').split(':').some((dir) => {
    try {
      accessSync(join(dir, binary), constants.X_OK);
      return dir !== '';
    } catch {
      return false;
    }
  });
}

/**
 * Waits for a process the stack started to answer its probe. The limits are generous: on a busy
 * machine a Node service can take minutes to start, and that is slow, not broken.
 */
async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what} did not come up within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const tcpOpen = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });

const ready = (url: string): Promise<boolean> => fetch(url).then((r) => r.ok);

/**
 * The active-active part of `kvix stack --replicas N`: NATS (unless given), one kv-events process
 * that dials the pods and publishes the index stream, and N endpoint-picker replicas following it
 * (each its own process, restarted when killed, bootstrapping from the snapshot).
 */
export async function startReplicatedRouters(o: ReplicatedRoutersOptions): Promise<ReplicatedRouters> {
  let natsUrl = o.natsUrl;
  if (natsUrl === null) {
    if (!onPath('nats-server')) throw new UsageError('stack: --replicas needs NATS with JetStream: install nats-server (apt-get install nats-server, or brew install nats-server) or pass --nats-url');
    o.supervisor.start({ name: 'nats', port: o.natsPort, eventPort: 0, replayPort: 0, exec: 'nats-server', args: ['-js', '-a', '127.0.0.1', '-p', String(o.natsPort), '-sd', join(o.dir, 'nats')], logFile: join(o.dir, 'nats.log') });
    await waitFor(`nats-server on :${o.natsPort}`, () => tcpOpen(o.natsPort), 120_000);
    natsUrl = `nats://127.0.0.1:${o.natsPort}`;
  }
  let predictorUrl: string | null = null;
  let eppConfig = o.eppConfig;
  if (o.predictorPort !== null) {
    o.supervisor.start({
      name: 'latency-predictor',
      port: o.predictorPort,
      eventPort: 0,
      replayPort: 0,
      script: binOf('@kvix/latency-predictor-service', 'kvix-latency-predictor.js'),
      args: ['--http-host', '127.0.0.1', '--http-port', String(o.predictorPort), '--log-level', o.logLevel],
      logFile: join(o.dir, 'latency-predictor.log'),
    });
    predictorUrl = `http://127.0.0.1:${o.predictorPort}`;
    await waitFor('the latency predictor', () => ready(`${predictorUrl}/healthz`), 300_000);
    eppConfig = { ...eppConfig, latencyPredictor: { enabled: true, predictionUrls: [predictorUrl], trainingUrl: predictorUrl } };
  }
  const configFile = join(o.dir, 'epp-replica.yaml');
  writeFileSync(configFile, stringify(eppConfig));
  o.say(`[stack] starting the index publisher (kv-events) and ${o.replicas} endpoint-picker replicas on NATS ${natsUrl}…`);
  o.supervisor.start({
    name: 'kv-events',
    port: o.publisherPort,
    eventPort: 0,
    replayPort: 0,
    script: binOf('@kvix/kv-events-service', 'kvix-kv-events.js'),
    args: ['--endpoints-file', o.endpointsFile, '--nats-url', natsUrl, '--replica-id', 'ingest', '--http-port', String(o.publisherPort), '--log-level', o.logLevel],
    logFile: join(o.dir, 'kv-events.log'),
  });
  const publisherUrl = `http://127.0.0.1:${o.publisherPort}`;
  await waitFor('the kv-events publisher', () => ready(`${publisherUrl}/readyz`), 300_000);
  const replicas: ReplicatedRouters['replicas'] = [];
  const eppBin = binOf('@kvix/epp', 'kvix-epp.js');
  for (let i = 0; i < o.replicas; i++) {
    const name = `epp-r${i + 1}`;
    const extProcPort = o.extProcBase + i;
    const metricsPort = o.metricsBase + i;
    o.supervisor.start({
      name,
      port: extProcPort,
      eventPort: 0,
      replayPort: 0,
      script: eppBin,
      args: ['--config', configFile, '--endpoints-file', o.endpointsFile, '--nats-url', natsUrl, '--replicate-index', 'follow', '--replica-id', `r${i + 1}`, '--no-gateway', '--ext-proc-port', String(extProcPort), '--metrics-port', String(metricsPort), '--debug-routes', '--log-level', o.logLevel],
      logFile: join(o.dir, `${name}.log`),
    });
    replicas.push({ name, extProcPort, metricsPort });
  }
  for (const r of replicas) await waitFor(`${r.name}`, () => ready(`http://127.0.0.1:${r.metricsPort}/readyz`), 300_000);
  return { natsUrl, publisherUrl, predictorUrl, replicas };
}
