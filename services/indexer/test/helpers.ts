import { waitFor } from '@kvix/test-support';
import type { SimConfigInput } from '@kvix/vllm-sim';
import { startLocalPod, writeLocalEndpointsFile, type LocalPod } from '@kvix/vllm-sim/testing';
import { pino } from 'pino';
import { Indexer, IndexerConfigSchema, type IndexerConfigInput } from '../src/index.js';

export const MODEL = 'Qwen/Qwen3-0.6B';
export const silent = pino({ level: 'silent' });

export type Sim = LocalPod;

/** A simulated pod for these tests (200× real time unless overridden). */
export const startSim = (overrides: SimConfigInput = {}): Promise<Sim> => startLocalPod({ timeScale: 200, ...overrides });

export const writeEndpointsFile = (sims: Sim[]): string => writeLocalEndpointsFile(sims, MODEL);

export async function startIndexer(input: IndexerConfigInput): Promise<Indexer> {
  const config = IndexerConfigSchema.parse({
    logLevel: 'silent',
    http: { host: '127.0.0.1', port: 0 },
    grpc: { host: '127.0.0.1', port: 0 },
    ...input,
    ingest: { readinessTimeoutMs: 5000, replayCooldownMs: 1000, endpointsPollIntervalMs: 200, ...(input.ingest ?? {}) },
    tokenization: { workers: 1, ...(input.tokenization ?? {}) },
  });
  return Indexer.start(config, silent);
}

export async function post(url: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** Waits until the indexer applied every batch each pod published. */
export async function caughtUp(indexer: Indexer, sims: Sim[]): Promise<void> {
  let last = '';
  await waitFor(async () => {
    last = JSON.stringify(indexer.ingestor!.podStates().map((p) => p.stream));
    for (const s of sims) {
      const state = (await (await fetch(`${s.url}/sim/state`)).json()) as { publisher: { nextSeq: string } };
      const stream = indexer.ingestor!.podStates().find((p) => p.id === s.id)?.stream;
      const published = BigInt(state.publisher.nextSeq);
      const expected = published === 0n ? null : String(published - 1n);
      if (!stream || stream.queued > 0 || stream.phase !== 'idle' || stream.lastSeq !== expected) return false;
    }
    return true;
  }, 15_000, 'the indexer to catch up').catch((err: Error) => {
    throw new Error(`${err.message}; streams: ${last}`);
  });
}
