import { CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions, type V1Pod } from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { INFERENCE_POOL, type PolicyGroup } from '../src/gaie.js';

/**
 * What the tests do to a cluster, as an operator and a kubelet would: namespaces, pods and their
 * status (no kubelet runs, so the test reports readiness), pools and the GAIE resources.
 */
export class TestCluster {
  readonly core: CoreV1Api;
  readonly custom: CustomObjectsApi;

  constructor(readonly kubeconfig: string) {
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfig);
    this.core = kc.makeApiClient(CoreV1Api);
    this.custom = kc.makeApiClient(CustomObjectsApi);
  }

  async namespace(name: string): Promise<string> {
    await this.core.createNamespace({ body: { metadata: { name } } });
    return name;
  }

  /** A pod bound to a (fictitious) node, as the scheduler would leave it: deleting it waits for a kubelet unless forced. */
  async createPod(namespace: string, name: string, labels: Record<string, string>, annotations: Record<string, string> = {}): Promise<V1Pod> {
    return this.core.createNamespacedPod({
      namespace,
      body: { metadata: { name, labels, annotations }, spec: { nodeName: 'node-1', containers: [{ name: 'vllm', image: 'vllm/vllm-openai:latest' }] } },
    });
  }

  /** What a kubelet reports: running with an IP, Ready or not (the status subresource). */
  async setPodStatus(namespace: string, name: string, status: { ip?: string; ready: boolean }): Promise<void> {
    const now = new Date().toISOString();
    await this.core.patchNamespacedPodStatus(
      {
        namespace,
        name,
        body: {
          status: {
            phase: 'Running',
            ...(status.ip ? { podIP: status.ip, podIPs: [{ ip: status.ip }], hostIP: '10.255.0.1' } : {}),
            conditions: [
              { type: 'Ready', status: status.ready ? 'True' : 'False', lastTransitionTime: now },
              { type: 'ContainersReady', status: status.ready ? 'True' : 'False', lastTransitionTime: now },
            ],
          },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  async patchPodMetadata(namespace: string, name: string, metadata: { labels?: Record<string, string | null>; annotations?: Record<string, string | null> }): Promise<void> {
    await this.core.patchNamespacedPod({ namespace, name, body: { metadata } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  }

  /** Graceful delete: with no kubelet the pod stays, terminating, until forced. */
  async deletePod(namespace: string, name: string, gracePeriodSeconds: number): Promise<void> {
    await this.core.deleteNamespacedPod({ namespace, name, gracePeriodSeconds });
  }

  async createPool(namespace: string, name: string, matchLabels: Record<string, string>, ports: number[]): Promise<void> {
    await this.custom.createNamespacedCustomObject({
      group: INFERENCE_POOL.group,
      version: INFERENCE_POOL.version,
      namespace,
      plural: INFERENCE_POOL.plural,
      body: {
        apiVersion: `${INFERENCE_POOL.group}/${INFERENCE_POOL.version}`,
        kind: INFERENCE_POOL.kind,
        metadata: { name },
        spec: { selector: { matchLabels }, targetPorts: ports.map((number) => ({ number })), endpointPickerRef: { name: `${name}-epp`, port: { number: 9002 } } },
      },
    });
  }

  async patchPool(namespace: string, name: string, spec: { matchLabels?: Record<string, string>; ports?: number[] }): Promise<void> {
    // A merge patch would merge matchLabels maps; the selector is replaced whole, as `kubectl apply` does.
    const ops: unknown[] = [];
    if (spec.matchLabels) ops.push({ op: 'replace', path: '/spec/selector/matchLabels', value: spec.matchLabels });
    if (spec.ports) ops.push({ op: 'replace', path: '/spec/targetPorts', value: spec.ports.map((number) => ({ number })) });
    await this.custom.patchNamespacedCustomObject(
      { group: INFERENCE_POOL.group, version: INFERENCE_POOL.version, namespace, plural: INFERENCE_POOL.plural, name, body: ops },
      setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
    );
  }

  async deletePool(namespace: string, name: string): Promise<void> {
    await this.custom.deleteNamespacedCustomObject({ group: INFERENCE_POOL.group, version: INFERENCE_POOL.version, namespace, plural: INFERENCE_POOL.plural, name });
  }

  async createCustom(group: PolicyGroup | string, version: string, plural: string, kind: string, namespace: string, name: string, spec: unknown): Promise<void> {
    await this.custom.createNamespacedCustomObject({ group, version, namespace, plural, body: { apiVersion: `${group}/${version}`, kind, metadata: { name }, spec } });
  }

  async replaceCustomSpec(group: string, version: string, plural: string, namespace: string, name: string, spec: unknown): Promise<void> {
    await this.custom.patchNamespacedCustomObject({ group, version, namespace, plural, name, body: [{ op: 'replace', path: '/spec', value: spec }] }, setHeaderOptions('Content-Type', PatchStrategy.JsonPatch));
  }

  async getCustom(group: string, version: string, plural: string, namespace: string, name: string): Promise<{ metadata: { generation?: number }; status?: { conditions?: { type: string; status: string; reason: string; message: string; observedGeneration?: number }[] } }> {
    return (await this.custom.getNamespacedCustomObject({ group, version, namespace, plural, name })) as never;
  }

  async deleteCustom(group: string, version: string, plural: string, namespace: string, name: string): Promise<void> {
    await this.custom.deleteNamespacedCustomObject({ group, version, namespace, plural, name });
  }
}

/** A quiet logger that still keeps every line, for asserting on what a component logged. */
export function capturingLogger(): { logger: Logger; lines: () => Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { logger, lines: () => lines };
}

/** A GAIE CRD file with its group renamed: llm-d's router serves the same schema as llm-d.ai. */
export function renamedCrd(file: string, fromGroup: string, toGroup: string): string {
  return readFileSync(file, 'utf8').replaceAll(fromGroup, toGroup);
}

export function crdFile(dir: string, name: string): string {
  return join(dir, name);
}
