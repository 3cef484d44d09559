import type { PodTarget } from '@kvix/kv-ingest';
import { ceiling, gaieCrdsDir, startKubeApiServer, startTcpProxy, waitFor, type KubeApiServer, type TcpProxy } from '@kvix/test-support';
import { readFileSync, writeFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { KubernetesDiscovery } from '../src/discovery.js';
import { loadKubeAccess } from '../src/kubeconfig.js';
import { KubernetesMetrics } from '../src/metrics.js';
import { KubernetesSettingsSchema, parsePoolRef, type KubernetesSettingsInput } from '../src/settings.js';
import { capturingLogger, TestCluster } from './cluster.js';

const crds = gaieCrdsDir();
if (crds.missing) console.warn(`[kubernetes discovery tests] skipped: ${crds.missing}`);

/**
 * Discovery against a real kube-apiserver + etcd: pods appear and go as a kubelet and an operator
 * would make them, the InferencePool is edited live, and the watch is made to fall out of the
 * server's window. Pods are served uncached (watch cache off for pods) so an old resourceVersion
 * reaches etcd, whose compaction turns it into a real 410 Gone.
 */
describe.skipIf(crds.dir === null)('Kubernetes discovery against a real API server', () => {
  let server: KubeApiServer;
  let cluster: TestCluster;
  let proxy: TcpProxy | null = null;
  const running: KubernetesDiscovery[] = [];
  let nsCounter = 0;

  beforeAll(async () => {
    server = await startKubeApiServer({ extraArgs: ['--watch-cache-sizes=pods#0'] });
    await server.applyCrds(crds.dir!);
    cluster = new TestCluster(server.kubeconfig);
  }, ceiling(180_000));

  afterAll(async () => {
    await proxy?.close();
    await server?.stop();
  });

  afterEach(async () => {
    for (const d of running.splice(0)) await d.stop();
  });

  async function freshNamespace(): Promise<string> {
    return cluster.namespace(`t${process.pid}-${++nsCounter}`);
  }

  interface Started {
    discovery: KubernetesDiscovery;
    /** The latest snapshot, as endpoint ids. */
    ids: () => string[];
    targets: () => readonly PodTarget[];
    metrics: KubernetesMetrics;
    registry: Registry;
    lines: () => Record<string, unknown>[];
    /** Resolves when the snapshot's ids equal `want` (sorted); returns how long after `since` it arrived. */
    until: (want: string[], since?: number) => Promise<number>;
  }

  async function startDiscovery(namespace: string, settings: KubernetesSettingsInput, kubeconfig = server.kubeconfig): Promise<Started> {
    const parsed = KubernetesSettingsSchema.parse({ kubeconfig, namespace, ...settings });
    const registry = new Registry();
    const metrics = new KubernetesMetrics(registry);
    const { logger, lines } = capturingLogger();
    const access = loadKubeAccess(parsed);
    const ref = parsed.inferencePool ? parsePoolRef(parsed.inferencePool) : null;
    const pool = ref ? { namespace: ref.namespace ?? namespace, name: ref.name } : null;
    const discovery = new KubernetesDiscovery({ access, settings: parsed, pool, defaults: { eventPort: 5557, replayPort: null, model: 'm', eventsByPod: true }, metrics, logger });
    let latest: readonly PodTarget[] = [];
    let changedAt = 0;
    await discovery.start((t) => {
      latest = t;
      changedAt = performance.now();
    });
    running.push(discovery);
    const ids = (): string[] => latest.map((t) => t.id).sort();
    return {
      discovery,
      ids,
      targets: () => latest,
      metrics,
      registry,
      lines,
      until: async (want, since = performance.now()) => {
        const sorted = [...want].sort();
        await waitFor(() => JSON.stringify(ids()) === JSON.stringify(sorted), 10_000, `endpoints ${JSON.stringify(sorted)} (have ${JSON.stringify(ids())})`);
        return changedAt - since;
      },
    };
  }

  const counter = async (registry: Registry, name: string, labels: Record<string, string>): Promise<number> => {
    const metric = await registry.getSingleMetric(name)!.get();
    return metric.values.filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val)).reduce((a, v) => a + v.value, 0);
  };

  it('follows pods created, made Ready and unready (status subresource), terminating and force-deleted, each within a second', async () => {
    const ns = await freshNamespace();
    await cluster.createPool(ns, 'pool', { app: 'vllm' }, [8000]);
    const d = await startDiscovery(ns, { inferencePool: 'pool' });
    expect(d.ids()).toEqual([]);
    const latencies: number[] = [];
    const step = async (action: () => Promise<void>, want: string[]): Promise<void> => {
      const t0 = performance.now();
      await action();
      latencies.push(await d.until(want, t0));
    };

    await cluster.createPod(ns, 'vllm-a', { app: 'vllm' });
    await cluster.createPod(ns, 'vllm-b', { app: 'vllm' });
    await cluster.createPod(ns, 'other', { app: 'web' });
    await step(() => cluster.setPodStatus(ns, 'vllm-a', { ip: '10.1.0.1', ready: true }), ['10.1.0.1:8000']);
    await step(() => cluster.setPodStatus(ns, 'vllm-b', { ip: '10.1.0.2', ready: true }), ['10.1.0.1:8000', '10.1.0.2:8000']);
    // A pod the pool does not select never shows up, Ready or not.
    await cluster.setPodStatus(ns, 'other', { ip: '10.1.0.9', ready: true });
    await step(() => cluster.setPodStatus(ns, 'vllm-a', { ip: '10.1.0.1', ready: false }), ['10.1.0.2:8000']);
    await step(() => cluster.setPodStatus(ns, 'vllm-a', { ip: '10.1.0.1', ready: true }), ['10.1.0.1:8000', '10.1.0.2:8000']);
    // Graceful deletion: no kubelet ends it, but the pod leaves the endpoints as soon as it is terminating.
    await step(() => cluster.deletePod(ns, 'vllm-b', 30), ['10.1.0.1:8000']);
    await cluster.deletePod(ns, 'vllm-b', 0);
    await step(() => cluster.deletePod(ns, 'vllm-a', 0), []);
    expect(d.ids()).toEqual([]);
    // Not an assertion on time (the machine may be loaded): the figure goes in the notes.
    console.log(`[kubernetes discovery] change → snapshot latencies (ms): ${latencies.map((l) => l.toFixed(0)).join(', ')}`);
    const logged = d.lines().map((l) => l['msg']);
    expect(logged).toContain('pod ready: serving');
    expect(logged).toContain('pod left the endpoints');
  });

  it('carries pod labels, annotations and the data-parallel ranks of the pool\'s target ports into the endpoints', async () => {
    const ns = await freshNamespace();
    await cluster.createPool(ns, 'pool', { app: 'vllm' }, [8000, 8001]);
    const d = await startDiscovery(ns, { inferencePool: `${ns}/pool` });
    await cluster.createPod(ns, 'dp', { app: 'vllm', 'kvix.io/draining': 'false' }, { 'kvix.io/kv-events-port': '6000', 'kvix.io/model': 'org/model-x', 'kvix.io/lora-adapters': 'support-v2' });
    await cluster.setPodStatus(ns, 'dp', { ip: '10.2.0.1', ready: true });
    await d.until(['10.2.0.1:8000', '10.2.0.1:8001']);
    expect(d.targets().map((t) => ({ name: t.name, rank: t.rank, events: t.eventEndpoint, model: t.model, adapters: t.adapters, draining: t.labels?.['kvix.io/draining'] }))).toEqual([
      { name: 'dp', rank: 0, events: 'tcp://10.2.0.1:6000', model: 'org/model-x', adapters: ['support-v2'], draining: 'false' },
      { name: 'dp/rank-1', rank: 1, events: 'tcp://10.2.0.1:6001', model: 'org/model-x', adapters: ['support-v2'], draining: 'false' },
    ]);
    // A rank taken out of service by llm-d's annotation, and a label change (draining), apply live.
    await cluster.patchPodMetadata(ns, 'dp', { annotations: { 'llm-d.ai/active-ports': '8000' }, labels: { 'kvix.io/draining': 'true' } });
    await d.until(['10.2.0.1:8000']);
    await waitFor(() => d.targets()[0]?.labels?.['kvix.io/draining'] === 'true', 10_000, 'draining label');
  });

  it('applies the InferencePool\'s selector and target port changes live, and waits for a pool that does not exist yet', async () => {
    const ns = await freshNamespace();
    const d = await startDiscovery(ns, { inferencePool: 'late' });
    expect(d.ids()).toEqual([]);
    expect(d.lines().some((l) => l['msg'] === 'InferencePool not found: no endpoints until it exists')).toBe(true);
    for (const [name, app, ip] of [['blue-0', 'blue', '10.3.0.1'], ['green-0', 'green', '10.3.0.2']] as const) {
      await cluster.createPod(ns, name, { app });
      await cluster.setPodStatus(ns, name, { ip, ready: true });
    }
    await cluster.createPool(ns, 'late', { app: 'blue' }, [8000]);
    await d.until(['10.3.0.1:8000']);
    await cluster.patchPool(ns, 'late', { matchLabels: { app: 'green' } });
    await d.until(['10.3.0.2:8000']);
    await cluster.patchPool(ns, 'late', { ports: [9000, 9001] });
    await d.until(['10.3.0.2:9000', '10.3.0.2:9001']);
    await cluster.deletePool(ns, 'late');
    await d.until([]);
    expect(d.discovery.pool).toBeNull();
  });

  it('re-lists after 410 Gone and loses nothing that changed while the watch was cut off', async () => {
    const ns = await freshNamespace();
    for (const [name, ip] of [['keep', '10.4.0.1'], ['goes-unready', '10.4.0.2'], ['deleted', '10.4.0.3']] as const) {
      await cluster.createPod(ns, name, { app: 'vllm' });
      await cluster.setPodStatus(ns, name, { ip, ready: true });
    }
    proxy = await startTcpProxy(Number(new URL(server.url).port));
    const viaProxy = `${server.kubeconfig}-proxy`;
    writeFileSync(viaProxy, readFileSync(server.kubeconfig, 'utf8').replace(server.url, `https://127.0.0.1:${proxy.port}`));
    const d = await startDiscovery(ns, { podSelector: 'app=vllm', targetPorts: [8000] }, viaProxy);
    await d.until(['10.4.0.1:8000', '10.4.0.2:8000', '10.4.0.3:8000']);

    proxy.sever();
    await cluster.setPodStatus(ns, 'goes-unready', { ip: '10.4.0.2', ready: false });
    await cluster.deletePod(ns, 'deleted', 0);
    await cluster.createPod(ns, 'added', { app: 'vllm' });
    await cluster.setPodStatus(ns, 'added', { ip: '10.4.0.4', ready: true });
    // Every resourceVersion the watch could resume from is now gone from etcd.
    await server.compactEtcd();
    proxy.restore();

    await d.until(['10.4.0.1:8000', '10.4.0.4:8000']);
    expect(await counter(d.registry, 'kvix_kubernetes_lists_total', { resource: 'pods', reason: 'gone' })).toBeGreaterThanOrEqual(1);
    expect(d.lines().some((l) => l['msg'] === 'watch expired (410 Gone): re-listed')).toBe(true);
    await proxy.close();
    proxy = null;
  });

  it('renews a watch the server ends from its last bookmark, without re-listing', async () => {
    const ns = await freshNamespace();
    await cluster.createPool(ns, 'pool', { app: 'vllm' }, [8000]);
    const d = await startDiscovery(ns, { inferencePool: 'pool', watchTimeoutSeconds: 3 });
    // Another pool changing moves the collection's resourceVersion past this watch's, which only a
    // bookmark (sent shortly before the server ends the watch) tells it about.
    await cluster.createPool(ns, 'other', { app: 'other' }, [8000]);
    await waitFor(async () => (await counter(d.registry, 'kvix_kubernetes_watch_bookmarks_total', { resource: 'inferencepools' })) >= 1, 30_000, 'a bookmark');
    await waitFor(async () => (await counter(d.registry, 'kvix_kubernetes_watch_renewals_total', { resource: 'inferencepools' })) >= 2, 30_000, 'two watch renewals');
    await cluster.createPod(ns, 'p', { app: 'vllm' });
    await cluster.setPodStatus(ns, 'p', { ip: '10.5.0.1', ready: true });
    await d.until(['10.5.0.1:8000']);
    expect(await counter(d.registry, 'kvix_kubernetes_lists_total', { resource: 'inferencepools' })).toBe(1);
    expect(await counter(d.registry, 'kvix_kubernetes_lists_total', { resource: 'pods' })).toBe(1);
  });

  it('fails to start with what to do when the pool\'s CRD is missing or RBAC forbids the watch', async () => {
    const ns = await freshNamespace();
    await cluster.core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'nobody' } } });
    const noRights = await server.serviceAccountKubeconfig(ns, 'nobody');
    await expect(startDiscovery(ns, { inferencePool: 'pool' }, noRights)).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(startDiscovery(ns, { podSelector: 'app=vllm' }, noRights)).rejects.toThrow(/forbidden.*get\/list\/watch/);
  });
});
