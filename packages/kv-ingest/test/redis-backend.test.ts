import { scoreLookup } from '@kvix/kv-index';
import { envLayer } from '@kvix/service-kit';
import { startRedis, waitFor, type PrivateServer } from '@kvix/test-support';
import type { SimPod } from '@kvix/vllm-sim';
import { startLocalPod, writeLocalEndpointsFile } from '@kvix/vllm-sim/testing';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { createIndexStack, IndexSettingsSchema, IngestMetrics, Ingestor, INGESTION_ENV_BINDINGS, parseIngestConfig, type IndexStack } from '../src/index.js';

const MODEL = 'Qwen/Qwen3-0.6B';
const silent = pino({ level: 'silent' });
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('index settings', () => {
  it('selects the redis backend from a URL (KVIX_REDIS_URL) and refuses a redis backend without one', () => {
    expect(IndexSettingsSchema.parse({}).backend).toBe('memory');
    const fromEnv = envLayer({ KVIX_REDIS_URL: 'redis://cache:6379/1' }, INGESTION_ENV_BINDINGS);
    expect(IndexSettingsSchema.parse(fromEnv['index'])).toMatchObject({ backend: 'redis', redis: { url: 'redis://cache:6379/1', keyPrefix: '', commandTimeoutMs: 1000 } });
    expect(IndexSettingsSchema.parse({ backend: 'memory', redis: { url: 'redis://cache' } }).backend).toBe('memory');
    const missing = IndexSettingsSchema.safeParse({ backend: 'redis' });
    expect(missing.success).toBe(false);
    expect(missing.error?.issues[0]).toMatchObject({ path: ['redis', 'url'], message: expect.stringContaining('KVIX_REDIS_URL') });
    const bad = IndexSettingsSchema.safeParse({ redis: { url: 'http://cache' } });
    expect(bad.error?.issues[0]?.message).toContain('unsupported scheme');
  });
});

interface Sim {
  pod: SimPod;
  http: string;
  id: string;
}

async function startSim(): Promise<{ sim: Sim; endpoints: string }> {
  const local = await startLocalPod({ timeScale: 100, numGpuBlocksOverride: 256 });
  cleanups.push(() => local.pod.stop());
  return { sim: { pod: local.pod, http: local.url, id: local.id }, endpoints: writeLocalEndpointsFile([local], MODEL) };
}

async function startIngestion(redis: PrivateServer, endpointsFile: string) {
  const registry = new Registry();
  const metrics = new IngestMetrics(registry);
  const stack = createIndexStack(IndexSettingsSchema.parse({ blockSize: 16, redis: { url: redis.url, sweepIntervalMs: 0 } }), metrics, { logger: silent });
  cleanups.push(() => stack.index.close());
  const ingestor = new Ingestor({
    config: parseIngestConfig({ endpointsFile, replayIdleTimeoutMs: 1000, replayCooldownMs: 1000, readinessTimeoutMs: 5000 }),
    applier: stack.applier,
    metrics,
    logger: silent,
    backend: stack.status,
  });
  await ingestor.start();
  cleanups.push(() => ingestor.stop());
  await ingestor.whenReady();
  return { stack, ingestor, registry };
}

const prompt = (seed: number): number[] => Array.from({ length: 96 }, (_, k) => 1000 + seed * 977 + k * 13);

async function complete(sim: Sim, tokens: number[]): Promise<void> {
  const res = await fetch(`${sim.http}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, prompt: tokens, max_tokens: 4 }) });
  expect(res.status).toBe(200);
  await res.arrayBuffer();
}

async function caughtUp(sim: Sim, ingestor: Ingestor): Promise<void> {
  await waitFor(async () => {
    const state = (await (await fetch(`${sim.http}/sim/state`)).json()) as { publisher: { nextSeq: string } };
    const stream = ingestor.podStates()[0]?.stream;
    return stream !== undefined && stream.queued === 0 && stream.phase === 'idle' && stream.lastSeq === String(BigInt(state.publisher.nextSeq) - 1n);
  }, 20_000, 'ingestion to catch up');
}

/** The index holds exactly the blocks the pod holds, for each prompt. */
async function expectIndexed(sim: Sim, stack: IndexStack, prompts: number[][]): Promise<void> {
  for (const tokens of prompts) {
    const keys = stack.hasher.keys(tokens, MODEL);
    const view = (await (await fetch(`${sim.http}/sim/prefix`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tokens }) })).json()) as { anyTierBlocks: number };
    const indexed = scoreLookup(await stack.index.lookup(keys, { earlyStop: false }), keys.length).find((s) => s.pod === sim.id)?.matchedBlocks ?? 0;
    expect(view.anyTierBlocks).toBeGreaterThan(0);
    expect(indexed).toBe(view.anyTierBlocks);
  }
}

async function metricSum(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const values = (await registry.getSingleMetric(name)!.get()).values.filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l));
  return values.reduce((a, v) => a + v.value, 0);
}

describe('ingestion into a Redis index', () => {
  it('counts the applies that fail while Redis is down and rebuilds the pod when Redis comes back empty', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.dispose());
    const { sim, endpoints } = await startSim();
    const { stack, ingestor, registry } = await startIngestion(redis, endpoints);
    const before = [prompt(1), prompt(2)];
    for (const p of before) await complete(sim, p);
    await caughtUp(sim, ingestor);
    await expectIndexed(sim, stack, before);
    expect(await metricSum(registry, 'kvix_index_backend_up', { backend: 'redis' })).toBe(1);

    await redis.stop();
    const during = [prompt(3)];
    for (const p of during) await complete(sim, p);
    await waitFor(async () => (await metricSum(registry, 'llm_d_epp_kv_cache_events_zmq_errors_total', { operation: 'apply' })) > 0, 10_000, 'a failed apply');
    expect(await metricSum(registry, 'kvix_index_backend_up', { backend: 'redis' })).toBe(0);
    expect(await metricSum(registry, 'kvix_index_backend_errors_total')).toBeGreaterThan(0);

    // No persistence: Redis returns empty, and the pod is rebuilt from its replay buffer.
    await redis.start();
    await waitFor(async () => (await metricSum(registry, 'kvix_ingest_replays_total', { reason: 'index_reset', outcome: 'complete' })) === 1, 20_000, 'the rebuild');
    await caughtUp(sim, ingestor);
    await expectIndexed(sim, stack, [...before, ...during]);
    expect(await metricSum(registry, 'kvix_index_backend_up', { backend: 'redis' })).toBe(1);
  });

  it('replays only what failed when Redis comes back with its data', async () => {
    // Append-only file: a restart keeps the index.
    const redis = await startRedis({ extraArgs: ['--appendonly', 'yes', '--appendfsync', 'always'] });
    cleanups.push(() => redis.dispose());
    const { sim, endpoints } = await startSim();
    const { stack, ingestor, registry } = await startIngestion(redis, endpoints);
    const before = [prompt(4)];
    await complete(sim, before[0]!);
    await caughtUp(sim, ingestor);

    await redis.stop();
    const during = [prompt(5)];
    await complete(sim, during[0]!);
    await waitFor(async () => (await metricSum(registry, 'llm_d_epp_kv_cache_events_zmq_errors_total', { operation: 'apply' })) > 0, 10_000, 'a failed apply');
    await redis.start();
    await waitFor(async () => (await metricSum(registry, 'kvix_ingest_replays_total', { reason: 'overflow', outcome: 'complete' })) >= 1, 20_000, 'the resync');
    await caughtUp(sim, ingestor);
    await expectIndexed(sim, stack, [...before, ...during]);
    expect(await metricSum(registry, 'kvix_ingest_replays_total', { reason: 'index_reset' })).toBe(0);
  });
});
