/**
 * Issue 16: centralized mode bound tcp://*:5557 and indexed whatever anyone published. With CURVE
 * and an allow-list, a publisher whose key is not listed is refused at the handshake (and counted);
 * nothing it sends reaches the index.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KvEvent } from '@kvix/kv-events';
import { KvEventsService, KvEventsServiceConfigSchema } from '@kvix/kv-events-service';
import { freePorts, waitFor } from '@kvix/test-support';
import { EventPublisher, parseKvEventsConfig } from '@kvix/vllm-sim';
import { curveKeyPair } from 'zeromq';
import { afterEach, describe, expect, it } from 'vitest';
import { MODEL, silent } from '../support/stack.js';
import { metric } from './support.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const stored = (hash: number): KvEvent[] => [
  { type: 'BlockStored', blockHashes: BigUint64Array.of(BigInt(hash)), parentBlockHash: null, tokenIds: Uint32Array.from({ length: 16 }, (_, i) => hash + i), blockSize: 16, loraId: null, medium: 'GPU', loraName: null, extraKeys: null, groupIdx: null, kvCacheSpecKind: null, kvCacheSpecSlidingWindow: null },
];

describe('the centralized collector with CURVE', () => {
  it('indexes publishers on its allow-list and refuses every other one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvix-curve-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const server = curveKeyPair();
    const allowed = curveKeyPair();
    const stranger = curveKeyPair();
    writeFileSync(join(dir, 'server.key'), `curve\n    public-key = "${server.publicKey}"\n    secret-key = "${server.secretKey}"\n`);
    writeFileSync(join(dir, 'allowed'), `# pods allowed to publish\n${allowed.publicKey}\n`);
    const [port] = await freePorts(1);
    const service = await KvEventsService.start(
      KvEventsServiceConfigSchema.parse({
        logLevel: 'silent',
        http: { host: '127.0.0.1', port: 0 },
        ingest: { mode: 'centralized', centralizedEndpoint: `tcp://127.0.0.1:${port}`, topicPrefix: '', curve: { secretKeyFile: join(dir, 'server.key'), allowedKeysFile: join(dir, 'allowed') } },
      }),
      silent,
    );
    cleanups.push(() => service.stop());
    const publisher = (name: string, keys: { publicKey: string; secretKey: string }): EventPublisher => {
      const p = new EventPublisher({
        config: parseKvEventsConfig({ enable_kv_cache_events: true, endpoint: `tcp://127.0.0.1:${port}` }),
        rank: 0,
        topic: `kv@${name}@${MODEL}`,
        layout: 'map',
        intHashes: true,
        logger: silent,
        curve: { ...keys, serverKey: server.publicKey },
      });
      cleanups.push(() => p.close());
      return p;
    };
    const good = publisher('10.0.0.1:8000', allowed);
    const bad = publisher('10.0.0.2:8000', stranger);
    await good.start();
    await bad.start();
    const pods = async (): Promise<string[]> => ((await (await fetch(`${service.url}/debug/pods`)).json()) as { pods: { id: string }[] }).pods.map((p) => p.id);
    // PUB drops what it sends before the handshake: keep publishing until the allowed pod shows up.
    let hash = 1;
    await waitFor(async () => {
      good.publish(stored(hash++));
      bad.publish(stored(hash++));
      return (await pods()).includes('10.0.0.1:8000');
    }, 20_000, 'the allowed publisher indexed');
    await waitFor(async () => metric(await (await fetch(`${service.url}/metrics`)).text(), 'llm_d_epp_kv_cache_events_publishers_refused_total') > 0, 20_000, 'the stranger refused');
    for (let i = 0; i < 20; i++) bad.publish(stored(hash++));
    expect(await pods()).not.toContain('10.0.0.2:8000');
  });
});
