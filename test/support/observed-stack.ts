import { EnvoySim } from '@kvix/envoy-sim';
import { Epp, EppConfigSchema } from '@kvix/epp';
import { Indexer, IndexerConfigSchema } from '@kvix/indexer';
import { KvEventsService, KvEventsServiceConfigSchema } from '@kvix/kv-events-service';
import { PREDICTED_LATENCY_PICKER_CONFIG } from '@kvix/scheduler';
import { startNats, waitFor, type PrivateServer } from '@kvix/test-support';
import { chat, endpointsFile, MODEL, send, silent, startSim, type Sim } from './stack.js';

/** A client-facing alias served by MODEL (a model rewrite rule, so its metrics have samples). */
export const ALIAS = 'support';

/**
 * Everything an operator's Prometheus scrapes, running: three simulated pods; the EPP (embedded
 * index, gateway, ext_proc behind envoy-sim, predicted-latency routing, a model alias); a
 * kv-events process publishing the index stream over NATS; and an indexer following that stream
 * (a replica, so replication series exist).
 */
export interface ObservedStack {
  sims: Sim[];
  epp: Epp;
  indexer: Indexer;
  kvEvents: KvEventsService;
  envoy: EnvoySim;
  nats: PrivateServer;
  gateway: string;
  /** The EPP's metrics/ops listener. */
  eppOps: string;
  stop(): Promise<void>;
}

export async function startObservedStack(): Promise<ObservedStack> {
  const cleanups: (() => Promise<unknown>)[] = [];
  const stop = async (): Promise<void> => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  };
  try {
    const nats = await startNats();
    cleanups.push(() => nats.stop());
    const sims: Sim[] = [];
    for (let i = 0; i < 3; i++) {
      const s = await startSim();
      sims.push(s);
      cleanups.push(() => s.pod.stop());
    }
    const file = endpointsFile(sims);
    const ingest = { endpointsFile: file, readinessTimeoutMs: 5000, replayCooldownMs: 1000, endpointsPollIntervalMs: 200 };
    const replication = { natsUrl: nats.url, snapshotIntervalMs: 1000 };

    const kvEvents = await KvEventsService.start(KvEventsServiceConfigSchema.parse({ logLevel: 'silent', http: { host: '127.0.0.1', port: 0 }, ingest, replication: { ...replication, replicaId: 'publisher', index: 'publish' } }), silent);
    cleanups.push(() => kvEvents.stop());
    const indexer = await Indexer.start(
      IndexerConfigSchema.parse({ logLevel: 'silent', http: { host: '127.0.0.1', port: 0 }, grpc: { host: '127.0.0.1', port: 0 }, ingest, tokenization: { workers: 1 }, analytics: { historyIntervalMs: 500 }, replication: { ...replication, replicaId: 'indexer', index: 'follow' } }),
      silent,
    );
    cleanups.push(() => indexer.stop());

    const epp = await Epp.start(
      EppConfigSchema.parse({
        logLevel: 'silent',
        gateway: { host: '127.0.0.1', port: 0 },
        extProc: { host: '127.0.0.1', port: 0 },
        metrics: { host: '127.0.0.1', port: 0 },
        ingest,
        tokenization: { workers: 1 },
        // The /ui page's history samples twice a second, so a test sees intervals with traffic quickly.
        analytics: { historyIntervalMs: 500 },
        // A model ready after a few answers, so the first round's traffic trains it and the next is predicted.
        latencyPredictor: { enabled: true, builtin: { minSamples: 2 } },
        scheduler: { ...PREDICTED_LATENCY_PICKER_CONFIG, modelRewrites: [{ name: 'support-alias', model: ALIAS, targets: [{ model: MODEL, weight: 1 }] }] },
      }),
      silent,
    );
    cleanups.push(() => epp.stop());
    const eppOps = `http://127.0.0.1:${epp.metricsPort}`;
    const envoy = await EnvoySim.start({ extProcTarget: `127.0.0.1:${epp.extProc!.port}` });
    cleanups.push(() => envoy.close());
    for (const url of [`${eppOps}/readyz`, `${indexer.httpUrl}/readyz`, `${kvEvents.url}/readyz`]) {
      await waitFor(async () => (await fetch(url)).status === 200, 30_000, `${url} ready`);
    }
    return { sims, epp, indexer, kvEvents, envoy, nats, gateway: `http://127.0.0.1:${epp.gateway!.port}`, eppOps, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Reads a streamed answer to its end (the EPP observes inter-token latency on the way). */
async function stream(base: string, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<number> {
  const res = await fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }) });
  await res.text();
  return res.status;
}

/**
 * One round of the traffic the dashboards and the page are about: prefix-sharing chats through the
 * gateway and through Envoy's protocol, streamed answers with a (too tight) TTFT SLO, the alias, a
 * malformed request, and the same prompts scored by the indexer.
 */
export async function driveTraffic(stack: ObservedStack, round: number): Promise<void> {
  for (let i = 0; i < 4; i++) {
    const q = `Where is parcel ${round}-${i}?`;
    const a = await send(stack.gateway, '/v1/chat/completions', chat(q, { max_tokens: 8 }));
    if (a.status !== 200) throw new Error(`gateway answered ${a.status}: ${a.text}`);
    const b = await send(stack.envoy.url, '/v1/chat/completions', chat(`${q} (via envoy)`, { max_tokens: 8 }));
    if (b.status !== 200) throw new Error(`envoy-sim answered ${b.status}: ${b.text}`);
    if ((await stream(stack.gateway, chat(q, { max_tokens: 8 }), { 'x-llm-d-slo-ttft-ms': '1', 'x-llm-d-slo-tpot-ms': '1' })) !== 200) throw new Error('a streamed request failed');
    const score = await fetch(`${stack.indexer.httpUrl}/v1/score/chat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, messages: chat(q)['messages'] }) });
    if (score.status !== 200) throw new Error(`indexer /v1/score/chat answered ${score.status}: ${await score.text()}`);
  }
  await send(stack.gateway, '/v1/chat/completions', { ...chat(`Alias question ${round}`), model: ALIAS });
  await send(stack.gateway, '/v1/chat/completions', '{"model":');
}
