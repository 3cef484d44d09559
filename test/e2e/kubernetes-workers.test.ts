import { request } from 'node:http';
import { ceiling, freePort, freePortRange, gaieCrdsDir, nodeCli, repoRoot, startKubeApiServer, waitFor, type KubeApiServer, type ManagedProcess } from '@kvix/test-support';
import { resolveSimConfig, SimPod } from '@kvix/vllm-sim';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metricSum, poolManifest, reportPodReady, vllmPodManifest } from '../support/kube-pool.js';
import { MODEL, silent, SYSTEM } from '../support/stack.js';

const crds = gaieCrdsDir();
if (crds.missing) console.warn(`[e2e kubernetes workers] skipped: ${crds.missing}`);

const NS = 'cores';
const POOL = 'kvix';
const WORKERS = 2;

interface Routed {
  status: number;
  worker: string | undefined;
  endpoint: string | undefined;
  model: unknown;
}

/**
 * `kvix-epp --routing-workers 2 --inference-pool` against a real kube-apiserver: the primary alone
 * watches the API and writes the pool's status and Events; the workers route with the pods and the
 * pool's resources it relays. Each request goes on a connection of its own, so node:cluster hands
 * the requests to both workers in turn.
 */
describe.skipIf(crds.dir === null)('kvix-epp --routing-workers on Kubernetes (real API server)', () => {
  let server: KubeApiServer;
  let epp: ManagedProcess;
  const cli = nodeCli(join(repoRoot(), 'services/epp/bin/kvix-epp.js'));
  const pods: { name: string; ip: string; eventPort: number; id: string; sim: SimPod }[] = [];
  let gatewayPort = 0;
  let metrics = '';

  const kubectl = (...args: string[]): Promise<string> => server.kubectl(['-n', NS, ...args]);
  const apply = (yaml: string): Promise<string> => server.kubectl(['-n', NS, 'apply', '-f', '-'], yaml);
  const scrape = async (): Promise<string> => (await fetch(`${metrics}/metrics`)).text();

  function ask(question: string, model = MODEL): Promise<Routed> {
    const body = JSON.stringify({ model, max_tokens: 4, messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: question }] });
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: gatewayPort, path: '/v1/chat/completions', method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          let model: unknown = null;
          try {
            model = (JSON.parse(text) as { model?: unknown }).model;
          } catch {
            // An error body: its status says enough.
          }
          resolve({ status: res.statusCode ?? 0, worker: res.headers['x-kvix-worker'] as string | undefined, endpoint: res.headers['x-kvix-endpoint'] as string | undefined, model });
        });
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  /** Asks until every worker answered at least twice; returns every answer. */
  async function askEveryWorker(question: (i: number) => string, model = MODEL): Promise<Routed[]> {
    const seen: Routed[] = [];
    await waitFor(
      async () => {
        seen.push(await ask(question(seen.length), model));
        const per = new Map<string | undefined, number>();
        for (const s of seen) per.set(s.worker, (per.get(s.worker) ?? 0) + 1);
        return per.size === WORKERS && [...per.values()].every((n) => n >= 2);
      },
      30_000,
      () => `answers from every worker (so far: ${JSON.stringify(seen.map((s) => [s.worker, s.status]))})`,
    );
    return seen;
  }

  beforeAll(async () => {
    server = await startKubeApiServer();
    await server.applyCrds(crds.dir!);
    await server.kubectl(['create', 'namespace', NS]);
    const port = await freePort();
    for (let i = 0; i < 2; i++) {
      const ip = `127.0.0.${21 + i}`;
      const eventPort = await freePortRange(2);
      const sim = await SimPod.start(
        resolveSimConfig({ model: MODEL, host: ip, port, timeScale: 50, logLevel: 'silent', pythonHashSeed: '0', kvEventsConfig: { enable_kv_cache_events: true, endpoint: `tcp://*:${eventPort}`, replay_endpoint: `tcp://*:${eventPort + 1}` } }, {}),
        silent,
      );
      pods.push({ name: `vllm-${i}`, ip, eventPort, id: `${ip}:${port}`, sim });
    }
    await apply(poolManifest(POOL, port));
    for (const pod of pods) {
      await apply(vllmPodManifest(pod));
      await reportPodReady(server, NS, pod, true);
    }
    const [extProcPort, metricsPort] = [await freePort(), await freePort()];
    gatewayPort = await freePort();
    epp = cli.run([
      `--routing-workers=${WORKERS}`,
      `--inference-pool=${NS}/${POOL}`,
      `--kubeconfig=${server.kubeconfig}`,
      `--model=${MODEL}`,
      '--gateway-host=127.0.0.1',
      `--gateway-port=${gatewayPort}`,
      '--ext-proc-host=127.0.0.1',
      `--ext-proc-port=${extProcPort}`,
      '--metrics-host=127.0.0.1',
      `--metrics-port=${metricsPort}`,
      '--tokenizer-workers=0',
    ]);
    metrics = `http://127.0.0.1:${metricsPort}`;
    await waitFor(async () => {
      if (epp.child.exitCode !== null) throw new Error(`kvix-epp exited: ${epp.output().slice(-2000)}`);
      return (await fetch(`${metrics}/readyz`).then((r) => r.status, () => 0)) === 200;
    }, 60_000, 'kvix-epp and its workers ready');
  }, ceiling(300_000));

  afterAll(async () => {
    await cli.stopAll();
    for (const p of pods) await p.sim.stop();
    await server?.stop();
  });

  it('routes with every worker to the pods the primary found in the API', async () => {
    const seen = await askEveryWorker((i) => `Which carrier ships to Oslo? (${i})`);
    expect(seen.map((s) => s.status)).toEqual(seen.map(() => 200));
    expect(seen.every((s) => pods.some((p) => p.id === s.endpoint))).toBe(true);
  });

  it('watches the API once and records the pool\'s Events once, however many workers route', async () => {
    // The API server's own count of the watches open in the namespace: the primary's, not one per worker.
    const watches = async (resource: string): Promise<number> => metricSum(await server.kubectl(['get', '--raw', '/metrics']), 'apiserver_longrunning_requests', { resource, scope: 'namespace', verb: 'WATCH' });
    for (const resource of ['pods', 'inferencemodelrewrites', 'inferenceobjectives']) {
      let open = -1;
      await waitFor(async () => (open = await watches(resource)) === 1, 15_000, () => `one watch of ${resource} (open: ${open})`);
    }
    const text = await scrape();
    expect(metricSum(text, 'kvix_kubernetes_lists_total', { resource: 'pods', reason: 'initial' })).toBe(1);
    expect(metricSum(text, 'kvix_kubernetes_pool_pods', { state: 'ready' })).toBe(2);
    const reasons = (await kubectl('get', 'events', '--field-selector', `involvedObject.name=${POOL}`, '-o', 'jsonpath={.items[*].reason}')).split(' ').filter((r) => r !== '');
    expect(reasons.filter((r) => r === 'EndpointsReady')).toEqual(['EndpointsReady']);
  });

  it('applies an InferenceModelRewrite in every worker, and its deletion too', async () => {
    expect((await ask('before the rewrite', 'support')).status).toBe(404);
    await apply(`
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: { name: support }
spec:
  poolRef: { name: ${POOL} }
  rules:
    - matches: [{ model: { value: support } }]
      targets: [{ modelRewrite: ${MODEL}, weight: 1 }]
`);
    await waitFor(async () => (await ask('probe', 'support')).status === 200, 15_000, 'the alias to apply');
    const seen = await askEveryWorker((i) => `alias ${i}: hello`, 'support');
    // Relayed to both workers with the pods: no worker still answers 404 for the alias.
    expect(seen.slice(-4).map((s) => [s.status, s.model])).toEqual(seen.slice(-4).map(() => [200, 'support']));
    await waitFor(async () => {
      const s = JSON.parse(await kubectl('get', 'inferencemodelrewrite', 'support', '-o', 'json')) as { status?: { conditions?: { type: string; status: string }[] } };
      return s.status?.conditions?.some((c) => c.type === 'Accepted' && c.status === 'True') ?? false;
    }, 10_000, 'Accepted=True on the rewrite');
    await kubectl('delete', 'inferencemodelrewrite', 'support');
    await waitFor(async () => (await ask('after the rewrite', 'support')).status === 404, 15_000, 'the alias to go');
    const after = await askEveryWorker((i) => `gone ${i}`, 'support');
    expect(after.slice(-4).map((s) => s.status)).toEqual([404, 404, 404, 404]);
  });

  it('follows a pod leaving the pool in every worker', async () => {
    const leaving = pods[1]!;
    await kubectl('label', 'pod', leaving.name, 'app-');
    await waitFor(async () => metricSum(await scrape(), 'kvix_kubernetes_pool_pods', { state: 'ready' }) === 1, 15_000, 'the primary to drop the pod');
    await waitFor(async () => {
      const seen = await askEveryWorker((i) => `one pod left ${i}`);
      return seen.slice(-4).every((s) => s.endpoint === pods[0]!.id);
    }, 15_000, 'both workers to route to the remaining pod only');
  });
});
