import { Indexer, IndexerConfigSchema } from '@kvix/indexer';
import { DEFAULT_PICKER_CONFIG } from '@kvix/scheduler';
import { ceiling, waitFor } from '@kvix/test-support';
import { describe, expect, it } from 'vitest';
import { cleanupsAfterEach } from '../support/cleanups.js';
import { chat, endpointsFile, send, silent, startSim, startStack, type Sim } from '../support/stack.js';

const cleanups = cleanupsAfterEach();

describe('an endpoint picker scoring with a remote indexer', () => {
  it('follows the prefix with scores from services/indexer, and its routing decisions reach the indexer', async () => {
    const sims: Sim[] = [];
    for (let i = 0; i < 3; i++) {
      const s = await startSim();
      sims.push(s);
      cleanups.push(() => s.pod.stop());
    }
    const indexer = await Indexer.start(
      IndexerConfigSchema.parse({ logLevel: 'silent', http: { host: '127.0.0.1', port: 0 }, grpc: { host: '127.0.0.1', port: 0 }, ingest: { endpointsFile: endpointsFile(sims), readinessTimeoutMs: 5000 }, tokenization: { workers: 1 } }),
      silent,
    );
    cleanups.push(() => indexer.stop());
    await waitFor(async () => (await fetch(`${indexer.httpUrl}/readyz`)).status === 200, 15_000, 'the indexer');
    const scheduler = {
      ...DEFAULT_PICKER_CONFIG,
      // The scorer's 250 ms call budget is a router's; the indexer's first answers (a tokenizer thread
      // starting) take seconds on a loaded machine, and a missed budget would route on load alone.
      plugins: DEFAULT_PICKER_CONFIG.plugins.map((p) => (p.type === 'precise-prefix-cache-scorer' ? { ...p, parameters: { indexer: `127.0.0.1:${indexer.grpcPort}`, timeoutMs: ceiling(5_000) } } : p)),
    };
    const stack = await startStack('gateway', sims, { embeddedIndex: false, scheduler });
    cleanups.push(() => stack.stop());
    expect((await fetch(`${stack.metrics}/debug/pods`)).status).toBe(404);

    const first = await send(stack.base, '/v1/chat/completions', chat('Where is parcel 1?'));
    expect(first.status).toBe(200);
    for (let i = 2; i <= 5; i++) expect((await send(stack.base, '/v1/chat/completions', chat(`Where is parcel ${i}?`))).endpoint).toBe(first.endpoint);
    const analytics = (await (await fetch(`${indexer.httpUrl}/v1/analytics`)).json()) as { routing: { decisions: number; by_pod: Record<string, { requests: number }> } };
    expect(analytics.routing.decisions).toBe(5);
    expect(analytics.routing.by_pod[first.endpoint!]?.requests).toBe(5);
    expect(await (await fetch(`${stack.metrics}/metrics`)).text()).not.toMatch(/^kvix_epp_prefix_scorer_errors_total/m);
  });
});
