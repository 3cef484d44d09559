import { ConfigError, collectArg, integerArg, type Binding } from '@kvix/service-kit';
import type { Command } from 'commander';
import { z } from 'zod';

// RFC 1123 labels: what a namespace and most object names must be.
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

const port = z.number().int().min(1).max(65535);

/**
 * Discovery from the Kubernetes API and the Gateway API Inference Extension resources, one section
 * (`kubernetes`) of every service that discovers pods (EPP, indexer, kv-events).
 */
export const KubernetesSettingsSchema = z
  .object({
    /**
     * The InferencePool (inference.networking.k8s.io/v1) whose pods are the endpoints:
     * `namespace/name`, or `name` in `namespace`. Its selector and targetPorts are followed live.
     */
    inferencePool: z
      .string()
      .min(1)
      .refine((v) => {
        const parts = v.split('/');
        return parts.length <= 2 && DNS_SUBDOMAIN.test(parts.at(-1)!) && (parts.length === 1 || DNS_LABEL.test(parts[0]!));
      }, 'must be namespace/name or name (lower-case RFC 1123)')
      .optional(),
    /** Instead of a pool: pods matching this label selector (`app=vllm,tier in (gpu)`), on `targetPorts`. */
    podSelector: z.string().min(1).optional(),
    /** Namespace of the pods (and of a pool named without one). Default: this pod's own, else the kubeconfig context's, else "default". */
    namespace: z.string().regex(DNS_LABEL, 'must be a lower-case RFC 1123 label').optional(),
    /** Serving ports of selected pods when no InferencePool names them (one per data-parallel rank). */
    targetPorts: z.array(port).min(1).max(8).default([8000]),
    /** A kubeconfig file; default: the in-cluster service account when running in a pod, else $KUBECONFIG or ~/.kube/config. */
    kubeconfig: z.string().min(1).optional(),
    /** A kubeconfig context other than the current one. */
    context: z.string().min(1).optional(),
    /** Server-side watch duration before the watch is renewed from its last resourceVersion (bookmarks keep that current). */
    watchTimeoutSeconds: z.number().int().min(1).max(3600).default(300),
    /** How long startup waits for the API server before giving up (a missing CRD or RBAC error fails at once). */
    startTimeoutMs: z.number().int().min(100).default(30_000),
    /** EPP: read InferenceModelRewrite and InferenceObjective resources of the pool (when their CRDs are installed). */
    poolResources: z.boolean().default(true),
    /** EPP: report on the resources it applies (Accepted conditions) and on the pool (Events). */
    writeStatus: z.boolean().default(true),
  })
  .strict()
  .refine((k) => !(k.inferencePool !== undefined && k.podSelector !== undefined), { message: 'set inferencePool or podSelector, not both' });

export type KubernetesSettings = z.output<typeof KubernetesSettingsSchema>;
export type KubernetesSettingsInput = z.input<typeof KubernetesSettingsSchema>;

export const KUBERNETES_ENV_BINDINGS: Readonly<Record<string, Binding>> = {
  KVIX_INFERENCE_POOL: { path: 'kubernetes.inferencePool' },
  KVIX_POD_SELECTOR: { path: 'kubernetes.podSelector' },
  KVIX_POD_NAMESPACE: { path: 'kubernetes.namespace' },
  KVIX_TARGET_PORTS: { path: 'kubernetes.targetPorts', as: 'list' },
  KVIX_KUBE_CONTEXT: { path: 'kubernetes.context' },
  KVIX_POOL_RESOURCES: { path: 'kubernetes.poolResources', as: 'boolean' },
  KVIX_KUBE_WRITE_STATUS: { path: 'kubernetes.writeStatus', as: 'boolean' },
};

export const KUBERNETES_FLAG_BINDINGS: Readonly<Record<string, string>> = {
  inferencePool: 'kubernetes.inferencePool',
  podSelector: 'kubernetes.podSelector',
  podNamespace: 'kubernetes.namespace',
  targetPort: 'kubernetes.targetPorts',
  kubeconfig: 'kubernetes.kubeconfig',
  kubeContext: 'kubernetes.context',
};

export function addKubernetesOptions(cmd: Command): Command {
  return cmd
    .option('--inference-pool <namespace/name>', 'discover the pods of this InferencePool (inference.networking.k8s.io/v1) from the Kubernetes API, following its selector and targetPorts (KVIX_INFERENCE_POOL)')
    .option('--pod-selector <selector>', 'discover the pods matching this label selector from the Kubernetes API, on --target-port (KVIX_POD_SELECTOR)')
    .option('--pod-namespace <namespace>', 'namespace of the pods (default: this pod\'s own, else the kubeconfig context\'s) (KVIX_POD_NAMESPACE)')
    .option('--target-port <port>', 'serving port of --pod-selector pods, one per data-parallel rank; repeatable (default 8000) (KVIX_TARGET_PORTS)', collectArg)
    .option('--kubeconfig <file>', 'kubeconfig to use (default: in-cluster service account, else $KUBECONFIG or ~/.kube/config)')
    .option('--kube-context <name>', 'kubeconfig context (default: the current one) (KVIX_KUBE_CONTEXT)');
}

/** `--target-port` and KVIX_TARGET_PORTS arrive as strings: numbers, in place. */
export function targetPortsFromStrings(layer: Record<string, unknown>): void {
  const k = layer['kubernetes'] as { targetPorts?: unknown } | undefined;
  if (!Array.isArray(k?.targetPorts)) return;
  k.targetPorts = (k.targetPorts as unknown[]).map((p) => {
    const n = typeof p === 'number' ? p : integerArgOrThrow(String(p));
    return n;
  });
}

function integerArgOrThrow(text: string): number {
  try {
    return integerArg(text);
  } catch {
    throw new ConfigError(`target port ${JSON.stringify(text)} is not an integer`);
  }
}

/** Whether the settings ask for Kubernetes discovery at all. */
export function kubernetesEnabled(k: KubernetesSettings): boolean {
  return k.inferencePool !== undefined || k.podSelector !== undefined;
}

/** `namespace/name` or `name` into its parts (namespace undefined when not given). */
export function parsePoolRef(ref: string): { namespace: string | undefined; name: string } {
  const parts = ref.split('/');
  return parts.length === 2 ? { namespace: parts[0]!, name: parts[1]! } : { namespace: undefined, name: parts[0]! };
}
