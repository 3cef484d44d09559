import { ceiling, gaieCrdsDir, startKubeApiServer, waitFor, type KubeApiServer } from '@kvix/test-support';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { KubernetesDiscovery } from '../src/discovery.js';
import { modelRewriteKind, objectiveKind, type PolicyGroup } from '../src/gaie.js';
import { loadKubeAccess } from '../src/kubeconfig.js';
import { KubernetesMetrics } from '../src/metrics.js';
import { PoolResources, type PoolResourcesState } from '../src/pool-resources.js';
import { KubernetesSettingsSchema } from '../src/settings.js';
import { StatusWriter } from '../src/status.js';
import { capturingLogger, crdFile, renamedCrd, TestCluster } from './cluster.js';

const crds = gaieCrdsDir();
if (crds.missing) console.warn(`[kubernetes pool resource tests] skipped: ${crds.missing}`);

const GAIE: PolicyGroup = 'inference.networking.x-k8s.io';
const LLMD: PolicyGroup = 'llm-d.ai';

/**
 * InferenceModelRewrite and InferenceObjective against a real API server, starting without any
 * GAIE CRD (as a cluster where only the EPP was installed) and installing them as an operator would.
 * The tests in this file run in order: each builds on the CRDs the previous one installed.
 */
describe.skipIf(crds.dir === null)('the pool\'s InferenceModelRewrite and InferenceObjective resources', () => {
  let server: KubeApiServer;
  let cluster: TestCluster;
  const running: PoolResources[] = [];

  beforeAll(async () => {
    server = await startKubeApiServer();
    cluster = new TestCluster(server.kubeconfig);
  }, ceiling(180_000));

  afterAll(async () => {
    await server?.stop();
  });

  afterEach(async () => {
    for (const r of running.splice(0)) await r.stop();
  });

  async function follow(namespace: string, pool = 'pool'): Promise<{ state: () => PoolResourcesState; lines: () => Record<string, unknown>[]; resources: PoolResources; changes: () => number }> {
    const { logger, lines } = capturingLogger();
    const access = loadKubeAccess({ kubeconfig: server.kubeconfig, namespace });
    let state: PoolResourcesState = { rewrites: [], objectives: [] };
    let changes = 0;
    const resources = new PoolResources({
      access,
      pool: { namespace, name: pool },
      watchTimeoutSeconds: 60,
      settleTimeoutMs: 10_000,
      metrics: new KubernetesMetrics(new Registry()),
      status: new StatusWriter(access, 'test-replica', logger),
      logger,
      onChange: (s) => {
        state = s;
        changes++;
      },
    });
    await resources.start();
    running.push(resources);
    return { state: () => state, lines, resources, changes: () => changes };
  }

  const rewrite = (pool: string, rules: unknown[]): unknown => ({ poolRef: { name: pool }, rules });
  const exact = (model: string, targets: [string, number?][]): unknown => ({ matches: [{ model: { value: model } }], targets: targets.map(([m, w]) => ({ modelRewrite: m, ...(w !== undefined ? { weight: w } : {}) })) });

  it('without the CRDs: the pool is a startup error naming what to install, the policy kinds are off (logged once each), and they apply once installed', async () => {
    const ns = await cluster.namespace('no-crds');
    const settings = KubernetesSettingsSchema.parse({ kubeconfig: server.kubeconfig, namespace: ns, inferencePool: 'pool', startTimeoutMs: 10_000 });
    const discovery = new KubernetesDiscovery({ access: loadKubeAccess(settings), settings, pool: { namespace: ns, name: 'pool' }, defaults: { eventPort: 5557, replayPort: null, model: 'm', eventsByPod: true }, metrics: null, logger: capturingLogger().logger });
    await expect(discovery.start(() => undefined)).rejects.toMatchObject({ code: 'CRD_NOT_INSTALLED', message: expect.stringMatching(/InferencePool CRD .* is not installed/) });
    await discovery.stop();

    const f = await follow(ns);
    expect(f.state()).toEqual({ rewrites: [], objectives: [] });
    const offLines = () => f.lines().filter((l) => String(l['msg']).includes('CRD not installed: off'));
    expect(offLines().map((l) => l['kind']).sort()).toEqual(['InferenceModelRewrite', 'InferenceObjective']);
    expect(f.lines().filter((l) => l['level'] === 40)).toEqual([]);

    await server.applyCrds(crds.dir!);
    await cluster.createCustom(GAIE, 'v1alpha2', 'inferencemodelrewrites', 'InferenceModelRewrite', ns, 'support', rewrite('pool', [exact('support', [['base', 80], ['support-v2', 20]])]));
    await waitFor(() => f.state().rewrites.length === 1, 30_000, 'the rewrite to apply once its CRD exists');
    expect(f.state().rewrites).toEqual([{ source: 'support', models: ['support'], targets: [{ model: 'base', weight: 80 }, { model: 'support-v2', weight: 20 }] }]);
    // Still one "off" line per kind: retries while absent were not logged again.
    expect(offLines()).toHaveLength(2);
  });

  it('applies rewrites live in GAIE\'s precedence (exact before generic, oldest resource first), reports Accepted, and rejects inconsistent weights', async () => {
    const ns = await cluster.namespace('rewrites');
    const f = await follow(ns);
    const kind = modelRewriteKind(GAIE);
    await cluster.createCustom(GAIE, 'v1alpha2', kind.plural, kind.kind, ns, 'a-catch-all', rewrite('pool', [{ targets: [{ modelRewrite: 'fallback-model' }] }]));
    await cluster.createCustom(GAIE, 'v1alpha2', kind.plural, kind.kind, ns, 'b-older', rewrite('pool', [exact('chat', [['chat-v1']])]));
    // Creation timestamps have a resolution of one second: make the next resource younger.
    await new Promise((r) => setTimeout(r, 1100));
    await cluster.createCustom(GAIE, 'v1alpha2', kind.plural, kind.kind, ns, 'a-newer', rewrite('pool', [exact('chat', [['chat-v2']]), exact('code', [['coder', 1], ['coder-lora', 3]])]));
    await cluster.createCustom(GAIE, 'v1alpha2', kind.plural, kind.kind, ns, 'other-pool', rewrite('elsewhere', [exact('chat', [['nope']])]));
    await cluster.createCustom(GAIE, 'v1alpha2', kind.plural, kind.kind, ns, 'bad-weights', rewrite('pool', [exact('mixed', [['x', 5], ['y']])]));
    await waitFor(() => f.state().rewrites.length === 4, 10_000, 'four rules');
    expect(f.state().rewrites.map((r) => [r.source, r.models, r.targets.map((t) => t.model)])).toEqual([
      ['b-older', ['chat'], ['chat-v1']],
      ['a-newer', ['chat'], ['chat-v2']],
      ['a-newer', ['code'], ['coder', 'coder-lora']],
      ['a-catch-all', [], ['fallback-model']],
    ]);

    await waitFor(async () => (await cluster.getCustom(GAIE, 'v1alpha2', kind.plural, ns, 'bad-weights')).status?.conditions?.[0]?.reason === 'Invalid', 10_000, 'the Invalid condition');
    const bad = await cluster.getCustom(GAIE, 'v1alpha2', kind.plural, ns, 'bad-weights');
    expect(bad.status!.conditions![0]).toMatchObject({ type: 'Accepted', status: 'False', reason: 'Invalid', message: expect.stringContaining('weight on every target'), observedGeneration: 1 });
    await waitFor(async () => (await cluster.getCustom(GAIE, 'v1alpha2', kind.plural, ns, 'b-older')).status?.conditions?.[0]?.status === 'True', 10_000, 'the Accepted condition');
    const untouched = await cluster.getCustom(GAIE, 'v1alpha2', kind.plural, ns, 'other-pool');
    // Another pool's resource is not ours to report on.
    expect(untouched.status?.conditions ?? []).toEqual([]);

    // Edits apply live, and the condition follows the generation.
    await cluster.replaceCustomSpec(GAIE, 'v1alpha2', kind.plural, ns, 'b-older', rewrite('pool', [exact('chat', [['chat-v3']])]));
    await waitFor(() => f.state().rewrites[0]?.targets[0]?.model === 'chat-v3', 10_000, 'the edited rule');
    await waitFor(async () => (await cluster.getCustom(GAIE, 'v1alpha2', kind.plural, ns, 'b-older')).status?.conditions?.[0]?.observedGeneration === 2, 10_000, 'observedGeneration 2');
    await cluster.deleteCustom(GAIE, 'v1alpha2', kind.plural, ns, 'b-older');
    await waitFor(() => f.state().rewrites[0]?.source === 'a-newer', 10_000, 'the deleted rule gone');
    // Writing conditions does not feed back into endless updates: the state settles.
    const settled = f.changes();
    await new Promise((r) => setTimeout(r, 1500));
    expect(f.changes()).toBe(settled);
  });

  it('applies objectives live (unset priority is 0), so requests naming them become sheddable or not', async () => {
    const ns = await cluster.namespace('objectives');
    const f = await follow(ns);
    const kind = objectiveKind(GAIE);
    await cluster.createCustom(GAIE, 'v1alpha2', kind.plural, kind.kind, ns, 'batch', { poolRef: { name: 'pool' }, priority: -1 });
    await cluster.createCustom(GAIE, 'v1alpha2', kind.plural, kind.kind, ns, 'interactive', { poolRef: { name: 'pool' } });
    await waitFor(() => f.state().objectives.length === 2, 10_000, 'two objectives');
    expect([...f.state().objectives].sort((a, b) => a.name.localeCompare(b.name))).toEqual([
      { name: 'batch', priority: -1 },
      { name: 'interactive', priority: 0 },
    ]);
    await cluster.replaceCustomSpec(GAIE, 'v1alpha2', kind.plural, ns, 'batch', { poolRef: { name: 'pool' }, priority: 5 });
    await waitFor(() => f.state().objectives.find((o) => o.name === 'batch')?.priority === 5, 10_000, 'the new priority');
    await waitFor(async () => (await cluster.getCustom(GAIE, 'v1alpha2', kind.plural, ns, 'batch')).status?.conditions?.[0]?.message.includes('priority 5'), 10_000, 'the condition');
  });

  it('reads llm-d\'s llm-d.ai group instead of GAIE\'s when both are installed, as llm-d\'s EPP does', async () => {
    const ns = await cluster.namespace('both-groups');
    const f = await follow(ns);
    await cluster.createCustom(GAIE, 'v1alpha2', 'inferencemodelrewrites', 'InferenceModelRewrite', ns, 'legacy', rewrite('pool', [exact('m', [['from-gaie']])]));
    await waitFor(() => f.state().rewrites[0]?.targets[0]?.model === 'from-gaie', 10_000, 'the GAIE rule');
    // llm-d's router serves the same schema under llm-d.ai.
    const dir = mkdtempSync(join(tmpdir(), 'kvix-llmd-crds-'));
    for (const name of ['inference.networking.x-k8s.io_inferencemodelrewrites.yaml', 'inference.networking.x-k8s.io_inferenceobjectives.yaml']) {
      writeFileSync(join(dir, name.replace(GAIE, LLMD)), renamedCrd(crdFile(crds.dir!, name), GAIE, LLMD));
    }
    await server.applyCrds(dir);
    await waitFor(() => f.resources.groups().rewrites === LLMD, 30_000, 'the llm-d.ai group to take over');
    expect(f.state().rewrites).toEqual([]);
    await cluster.createCustom(LLMD, 'v1alpha2', 'inferencemodelrewrites', 'InferenceModelRewrite', ns, 'current', rewrite('pool', [exact('m', [['from-llm-d']])]));
    await waitFor(() => f.state().rewrites[0]?.targets[0]?.model === 'from-llm-d', 10_000, 'the llm-d.ai rule');
    expect(f.state().rewrites).toHaveLength(1);
  });
});
