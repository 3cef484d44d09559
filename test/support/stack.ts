import { insertHttpFilter, type EnvoyProcess } from '@kvix/envoy';
import { Epp, EppConfigSchema, type EppConfigInput } from '@kvix/epp';
import { shippedEnvoyConfig, startEnvoy, waitFor } from '@kvix/test-support';
import type { SimConfigInput } from '@kvix/vllm-sim';
import { startLocalPod, writeLocalEndpointsFile, type LocalPod } from '@kvix/vllm-sim/testing';
import { pino } from 'pino';

export const MODEL = 'Qwen/Qwen3-0.6B';
export const silent = pino({ level: 'silent' });

/** How requests reach the endpoint picker: its own gateway, or a real Envoy running deploy/envoy/envoy.yaml. */
export type Front = 'gateway' | 'envoy';
export const FRONTS: Front[] = ['gateway', 'envoy'];

export type Sim = LocalPod;

/** A simulated pod for these tests (50× real time unless overridden). */
export const startSim = (overrides: SimConfigInput = {}): Promise<Sim> => startLocalPod(overrides);

export const endpointsFile = (sims: Sim[]): string => writeLocalEndpointsFile(sims, MODEL);

export interface Stack {
  epp: Epp;
  /** Where clients send requests. */
  base: string;
  envoy: EnvoyProcess | null;
  metrics: string;
  stop(): Promise<void>;
}

/** Envoy options of a stack: a subset hint, put into the request's `envoy.lb.subset_hint` metadata by a set_metadata filter before ext_proc. */
export interface EnvoyOptions {
  subsetHint?: string[];
}

/** The shipped Envoy configuration in front of EPP replicas and pods, on loopback, running. */
export async function startRealEnvoy(extProc: string[], pods: string[], options: EnvoyOptions = {}): Promise<EnvoyProcess> {
  let config = shippedEnvoyConfig({ extProc, pods });
  if (options.subsetHint) {
    config = insertHttpFilter(config, {
      name: 'envoy.filters.http.set_metadata',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.filters.http.set_metadata.v3.Config',
        metadata: [{ metadata_namespace: 'envoy.lb.subset_hint', value: { 'x-gateway-destination-endpoint-subset': options.subsetHint } }],
      },
    });
  }
  return startEnvoy({ config });
}

/** The endpoint picker over `sims`, reached through `front`. */
export async function startStack(front: Front, sims: Sim[], input: EppConfigInput = {}, envoy: EnvoyOptions = {}): Promise<Stack> {
  const config = EppConfigSchema.parse({
    logLevel: 'silent',
    gateway: { host: '127.0.0.1', port: 0, enabled: front === 'gateway' },
    extProc: { host: '127.0.0.1', port: 0, enabled: front === 'envoy' },
    metrics: { host: '127.0.0.1', port: 0 },
    ...input,
    ingest: { endpointsFile: endpointsFile(sims), readinessTimeoutMs: 5000, replayCooldownMs: 1000, endpointsPollIntervalMs: 200, ...(input.ingest ?? {}) },
    tokenization: { workers: 1, ...(input.tokenization ?? {}) },
  });
  const epp = await Epp.start(config, silent);
  const metrics = `http://127.0.0.1:${epp.metricsPort}`;
  await waitFor(async () => (await fetch(`${metrics}/readyz`)).status === 200, 15_000, 'the EPP to be ready');
  const proxy = front === 'envoy' ? await startRealEnvoy([`127.0.0.1:${epp.extProc!.port}`], sims.map((s) => s.id), envoy).catch(async (err: unknown) => {
    await epp.stop();
    throw err;
  }) : null;
  return {
    epp,
    base: proxy ? proxy.url() : `http://127.0.0.1:${epp.gateway!.port}`,
    envoy: proxy,
    metrics,
    stop: async () => {
      await proxy?.stop();
      await epp.stop();
    },
  };
}

export interface Answer {
  status: number;
  /** The endpoint that served, as the endpoint picker names it (x-kvix-endpoint, through either front). */
  endpoint: string | null;
  json: Record<string, unknown> | null;
  text: string;
  headers: Headers;
}

export async function send(base: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await res.text();
  let json: Record<string, unknown> | null;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = null;
  }
  return { status: res.status, endpoint: res.headers.get('x-kvix-endpoint'), json, text, headers: res.headers };
}

export const SYSTEM = 'You are the assistant of a logistics company. You know every warehouse, route, carrier and customs rule, and you answer in numbered steps with the runbook section first. '.repeat(4);
export const chat = (question: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ model: MODEL, max_tokens: 4, messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: question }], ...extra });
