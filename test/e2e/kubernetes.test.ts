import type { EnvoyProcess } from '@kvix/envoy';
import { ceiling, freePort, freePortRange, gaieCrdsDir, nodeCli, repoRoot, startKubeApiServer, waitFor, type KubeApiServer, type ManagedProcess } from '@kvix/test-support';
import { resolveSimConfig, SimPod } from '@kvix/vllm-sim';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metricSum, poolManifest, reportPodReady, vllmPodManifest } from '../support/kube-pool.js';
import { MODEL, send, silent, startRealEnvoy, SYSTEM, type Answer } from '../support/stack.js';

const crds = gaieCrdsDir();
if (crds.missing) console.warn(`[e2e kubernetes tour] skipped: ${crds.missing}`);

const NS = 'tour';
const POOL = 'kvix';
const LORA = 'support-v2';

interface PodUnderTest {
  name: string;
  ip: string;
  /** vLLM binds its KV-event socket on every interface (tcp://*:port), so pods sharing a host need their own ports: the pod's kvix.io/kv-events-port annotation says which. */
  eventPort: number;
  sim: SimPod | null;
  id: string;
}

/**
 * The seed tour's Kubernetes steps (docs/kubernetes.md) against a real kube-apiserver: the EPP runs
 * as `kvix-epp --inference-pool`, exactly as the Helm chart starts it, and finds its pods through
 * the API; the test plays the kubelet (it runs each pod as a simulated vLLM on its own loopback
 * address and reports its readiness through the status subresource) and the operator (kubectl
 * apply / delete). Traffic goes through the EPP's gateway and through Envoy's ext_proc protocol.
 */
describe.skipIf(crds.dir === null)('the seed tour on Kubernetes (real API server)', () => {
  let server: KubeApiServer;
  let epp: ManagedProcess;
  let envoy: EnvoyProcess;
  const cli = nodeCli(join(repoRoot(), 'services/epp/bin/kvix-epp.js'));
  const pods: PodUnderTest[] = [];
  let port = 0;
  let gateway = '';
  let metrics = '';
  let fronts: { name: string; base: string }[] = [];

  const kubectl = (...args: string[]): Promise<string> => server.kubectl(['-n', NS, ...args]);
  const apply = (yaml: string): Promise<string> => server.kubectl(['-n', NS, 'apply', '-f', '-'], yaml);
  /** What the kubelet reports once the container answers its readiness probe (or stops answering). */
  const reportReady = (pod: PodUnderTest, ready: boolean): Promise<string> => reportPodReady(server, NS, pod, ready);
  const endpoints = async (): Promise<string[]> => ((await (await fetch(`${metrics}/debug/endpoints`)).json()) as { endpoints: { id: string }[] }).endpoints.map((e) => e.id).sort();
  const scrape = async (): Promise<string> => (await fetch(`${metrics}/metrics`)).text();
  const ask = (base: string, question: string, model = MODEL, headers: Record<string, string> = {}): Promise<Answer> =>
    send(base, '/v1/chat/completions', { model, max_tokens: 4, messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: question }] }, headers);

  async function startPodProcess(pod: PodUnderTest): Promise<void> {
    const config = resolveSimConfig(
      {
        model: MODEL,
        host: pod.ip,
        port,
        timeScale: 50,
        logLevel: 'silent',
        pythonHashSeed: '0',
        loraModules: [`${LORA}=/adapters/${LORA}`],
        kvEventsConfig: { enable_kv_cache_events: true, endpoint: `tcp://*:${pod.eventPort}`, replay_endpoint: `tcp://*:${pod.eventPort + 1}` },
      },
      {},
    );
    pod.sim = await SimPod.start(config, silent);
  }

  beforeAll(async () => {
    server = await startKubeApiServer();
    await server.applyCrds(crds.dir!);
    await server.kubectl(['create', 'namespace', NS]);
    port = await freePort();
    // Each pod on its own loopback address, all on the pool's one target port, as pods have their own IPs.
    for (let i = 0; i < 3; i++) {
      const pod: PodUnderTest = { name: `vllm-${i}`, ip: `127.0.0.${11 + i}`, eventPort: await freePortRange(2), sim: null, id: `127.0.0.${11 + i}:${port}` };
      await startPodProcess(pod);
      pods.push(pod);
    }
    // docs/kubernetes.md, step 2: the pool and its model servers.
    await apply(poolManifest(POOL, port));
    for (const pod of pods) {
      await apply(vllmPodManifest({ ...pod, loraAdapters: LORA }));
      await reportReady(pod, true);
    }
    // Every request with a negative priority counts as sheddable while any candidate's KV cache is in use at all.
    const schedulerFile = join(mkdtempSync(join(tmpdir(), 'kvix-tour-')), 'scheduler.yaml');
    writeFileSync(schedulerFile, ['plugins: [{type: metrics-data-source}, {type: precise-prefix-cache-scorer}, {type: queue-scorer}, {type: kv-cache-utilization-scorer}, {type: no-hit-lru-scorer}, {type: max-score-picker}]', 'schedulingProfiles: [{name: default, plugins: [{pluginRef: precise-prefix-cache-scorer, weight: 3}, {pluginRef: queue-scorer, weight: 2}, {pluginRef: kv-cache-utilization-scorer, weight: 2}, {pluginRef: no-hit-lru-scorer, weight: 2}, {pluginRef: max-score-picker}]}]', 'saturation: {queueDepthThreshold: 1000, kvCacheUtilThreshold: 0}', ''].join('\n'));
    const [gatewayPort, extProcPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
    // What the chart runs (deploy/helm/kvix/templates/epp.yaml), with a kubeconfig instead of the pod's service account.
    epp = cli.run([
      `--inference-pool=${NS}/${POOL}`,
      `--kubeconfig=${server.kubeconfig}`,
      `--model=${MODEL}`,
      `--scheduler-config=${schedulerFile}`,
      '--gateway-host=127.0.0.1',
      `--gateway-port=${gatewayPort}`,
      '--ext-proc-host=127.0.0.1',
      `--ext-proc-port=${extProcPort}`,
      '--metrics-host=127.0.0.1',
      `--metrics-port=${metricsPort}`,
      '--tokenizer-workers=1',
    ]);
    gateway = `http://127.0.0.1:${gatewayPort}`;
    metrics = `http://127.0.0.1:${metricsPort}`;
    await waitFor(async () => {
      if (epp.child.exitCode !== null) throw new Error(`kvix-epp exited: ${epp.output().slice(-2000)}`);
      return (await fetch(`${metrics}/readyz`).then((r) => r.status, () => 0)) === 200;
    }, 60_000, 'kvix-epp ready');
    // A real Envoy running deploy/envoy/envoy.yaml, its pool the pods' addresses (what the chart's headless Service resolves to).
    envoy = await startRealEnvoy([`127.0.0.1:${extProcPort}`], pods.map((p) => p.id));
    fronts = [
      { name: 'gateway', base: gateway },
      { name: 'envoy', base: envoy.url() },
    ];
  }, ceiling(300_000));

  afterAll(async () => {
    await envoy?.stop();
    await cli.stopAll();
    for (const p of pods) await p.sim?.stop();
    await server?.stop();
  });

  it('discovers the pool\'s pods from the API and routes to them; a pod reported unready leaves at once and comes back', async () => {
    expect(await endpoints()).toEqual(pods.map((p) => p.id).sort());
    for (const f of fronts) {
      const a = await ask(f.base, 'Do you fix tubeless tyres?');
      expect(a.status, `${f.name}: ${a.text}`).toBe(200);
      expect(pods.map((p) => p.id)).toContain(a.endpoint);
    }
    await reportReady(pods[2]!, false);
    await waitFor(async () => !(await endpoints()).includes(pods[2]!.id), 10_000, 'the unready pod to leave');
    for (let i = 0; i < 6; i++) expect((await ask(fronts[i % 2]!.base, `Unready round ${i}: are you open on Monday?`)).endpoint).not.toBe(pods[2]!.id);
    await reportReady(pods[2]!, true);
    await waitFor(async () => (await endpoints()).includes(pods[2]!.id), 10_000, 'the pod to come back');
  });

  it('keeps prefix affinity: questions sharing the system prompt follow the pod holding it', async () => {
    for (const f of fronts) {
      const first = await ask(f.base, `${f.name}: how much is a brake bleed?`);
      for (let i = 0; i < 3; i++) expect((await ask(f.base, `${f.name} follow-up ${i}: and a chain?`)).endpoint).toBe(first.endpoint);
    }
  });

  it('serves an alias as soon as an InferenceModelRewrite names it, split by its weights, and follows edits and deletion live', async () => {
    expect((await ask(gateway, 'before the rewrite', 'support')).status).toBe(404);
    // docs/kubernetes.md, step 5.
    await apply(`
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: { name: support }
spec:
  poolRef: { name: ${POOL} }
  rules:
    - matches: [{ model: { value: support } }]
      targets: [{ modelRewrite: ${MODEL}, weight: 80 }, { modelRewrite: ${LORA}, weight: 20 }]
`);
    await waitFor(async () => (await ask(gateway, 'probe', 'support')).status === 200, 15_000, 'the alias to apply');
    const before = await scrape();
    for (let i = 0; i < 20; i++) {
      const f = fronts[i % 2]!;
      const a = await ask(f.base, `alias ${i}: hello`, 'support');
      expect(a.status, `${f.name}: ${a.text}`).toBe(200);
      // Clients only ever see the alias, whichever target served.
      expect(a.json?.['model']).toBe('support');
    }
    const after = await scrape();
    const served = (target: string) => metricSum(after, 'llm_d_epp_request_total', { model_name: 'support', target_model_name: target }) - metricSum(before, 'llm_d_epp_request_total', { model_name: 'support', target_model_name: target });
    expect(served(MODEL) + served(LORA)).toBe(20);
    expect(served(MODEL)).toBeGreaterThan(0);
    // llm-d's series and GAIE's deprecated twin, named after the InferenceModelRewrite.
    expect(metricSum(after, 'llm_d_epp_model_rewrite_decisions_total', { model_rewrite_name: 'support' })).toBeGreaterThanOrEqual(20);
    expect(metricSum(after, 'inference_extension_model_rewrite_decisions_total', { model_rewrite_name: 'support' })).toBeGreaterThanOrEqual(20);
    // The operator sees that the EPP applied it.
    await waitFor(async () => {
      const s = JSON.parse(await kubectl('get', 'inferencemodelrewrite', 'support', '-o', 'json')) as { status: { conditions: { type: string; status: string }[] } };
      return s.status.conditions.some((c) => c.type === 'Accepted' && c.status === 'True');
    }, 10_000, 'Accepted=True on the rewrite');

    // All traffic to the LoRA: an edit applies from the next request on.
    await kubectl('patch', 'inferencemodelrewrite', 'support', '--type=json', '-p', JSON.stringify([{ op: 'replace', path: '/spec/rules/0/targets', value: [{ modelRewrite: LORA, weight: 1 }] }]));
    await waitFor(async () => {
      const t0 = metricSum(await scrape(), 'llm_d_epp_request_total', { model_name: 'support', target_model_name: MODEL });
      for (let i = 0; i < 5; i++) await ask(gateway, `edit probe ${i}`, 'support');
      return metricSum(await scrape(), 'llm_d_epp_request_total', { model_name: 'support', target_model_name: MODEL }) === t0;
    }, 15_000, 'every alias request to go to the LoRA');
    await kubectl('delete', 'inferencemodelrewrite', 'support');
    await waitFor(async () => (await ask(gateway, 'after the rewrite', 'support')).status === 404, 15_000, 'the alias to go');
  });

  it('sheds requests of an InferenceObjective with negative priority when the pool is saturated, and stops as soon as it is raised', async () => {
    const objective = { 'x-gateway-inference-objective': 'batch' };
    expect((await ask(gateway, 'batch before the objective', MODEL, objective)).status).toBe(200);
    await apply(`
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: { name: batch }
spec: { poolRef: { name: ${POOL} }, priority: -1 }
`);
    await waitFor(async () => (await ask(gateway, 'batch probe', MODEL, objective)).status === 429, 15_000, 'the objective to make batch sheddable');
    for (const f of fronts) expect((await ask(f.base, `${f.name}: interactive stays served`)).status).toBe(200);
    const shed = await ask(envoy.url(), 'batch through envoy', MODEL, objective);
    expect(shed.status).toBe(429);
    await kubectl('patch', 'inferenceobjective', 'batch', '--type=merge', '-p', '{"spec":{"priority":1}}');
    await waitFor(async () => (await ask(gateway, 'batch again', MODEL, objective)).status === 200, 15_000, 'priority 1 to be served');
  });

  it('loses no request when a pod is deleted mid-traffic: it leaves the endpoints when it starts terminating', async () => {
    const victim = pods[1]!;
    const results: Answer[] = [];
    const traffic = (async () => {
      for (let i = 0; i < 40; i++) {
        results.push(await ask(fronts[i % 2]!.base, `Request ${i}: write a haiku about trains.`));
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await waitFor(() => results.length >= 10, 30_000, 'traffic to be under way');
    // docs/kubernetes.md, step 6: kubectl delete pod (the kubelet then stops the container).
    await kubectl('delete', 'pod', victim.name, '--wait=false');
    await waitFor(async () => !(await endpoints()).includes(victim.id), 10_000, 'the terminating pod to leave');
    const deletedAt = results.length;
    await victim.sim!.stop();
    victim.sim = null;
    await kubectl('delete', 'pod', victim.name, '--grace-period=0', '--force');
    await traffic;
    expect(results.map((r) => r.status)).toEqual(results.map(() => 200));
    expect(results.slice(deletedAt + 1).filter((r) => r.endpoint === victim.id)).toEqual([]);
  });

  it('exposes llm-d\'s, GAIE\'s and kvix\'s metrics for the pool', async () => {
    const text = await scrape();
    expect(metricSum(text, 'inference_pool_ready_pods', { name: POOL })).toBe(2);
    expect(metricSum(text, 'llm_d_epp_request_ttft_seconds_count')).toBeGreaterThan(0);
    expect(metricSum(text, 'kvix_kubernetes_pool_pods', { state: 'ready' })).toBe(2);
    expect(metricSum(text, 'kvix_kubernetes_lists_total', { resource: 'pods', reason: 'initial' })).toBe(1);
    expect(metricSum(text, 'kvix_ingest_batches_applied_total'), text.split('\n').filter((l) => l.startsWith('kvix_ingest') || l.startsWith('llm_d_epp_kv')).join('\n')).toBeGreaterThan(0);
    // The EPP recorded its view of the pool where `kubectl describe inferencepool` shows it.
    const events = await kubectl('get', 'events', '--field-selector', `involvedObject.name=${POOL}`, '-o', 'jsonpath={.items[*].reason}');
    expect(events).toContain('EndpointsReady');
  });
});
