import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts } from '@kvix/test-support';
import { pino } from 'pino';
import { resolveSimConfig, type SimConfigInput } from './config.js';
import { writeEndpointsFile } from './endpoints-file.js';
import { SimPod } from './pod.js';

/**
 * One simulated pod on free local ports with KV events and replay on, for other packages' tests:
 * the services under test talk to it over real sockets exactly as they would to vLLM.
 */
export interface LocalPod {
  pod: SimPod;
  url: string;
  /** host:port, as endpoints are named everywhere in kvix. */
  id: string;
  port: number;
  eventPort: number;
  replayPort: number;
}

export async function startLocalPod(overrides: SimConfigInput = {}): Promise<LocalPod> {
  const [port, eventPort, replayPort] = (await freePorts(3)) as [number, number, number];
  const config = resolveSimConfig(
    {
      port,
      timeScale: 50,
      logLevel: 'silent',
      pythonHashSeed: '0',
      kvEventsConfig: { enable_kv_cache_events: true, endpoint: `tcp://*:${eventPort}`, replay_endpoint: `tcp://*:${replayPort}` },
      ...overrides,
    },
    {},
  );
  const pod = await SimPod.start(config, pino({ level: 'silent' }));
  return { pod, url: `http://127.0.0.1:${port}`, id: `127.0.0.1:${port}`, port, eventPort, replayPort };
}

/** An endpoints file naming the pods, in a new temporary directory. */
export function writeLocalEndpointsFile(pods: readonly LocalPod[], model: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'kvix-endpoints-')), 'endpoints.yaml');
  writeEndpointsFile(file, pods.map((p, i) => ({ name: `sim-${i}`, address: '127.0.0.1', port: p.port, eventPort: p.eventPort, replayPort: p.replayPort, model })));
  return file;
}
