import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { KubernetesDiscovery } from './discovery.js';
import { loadKubeAccess, type KubeAccess } from './kubeconfig.js';
import { KubernetesMetrics } from './metrics.js';
import type { TargetDefaults } from './pod-targets.js';
import { kubernetesEnabled, parsePoolRef, type KubernetesSettings } from './settings.js';

/** What a service's ingestion settings contribute to pods found in Kubernetes. */
export interface IngestDefaults {
  mode: 'per-pod' | 'centralized';
  defaultEventPort: number;
  defaultReplayPort: number | null;
  defaultModel: string;
}

export interface KubernetesRuntime {
  access: KubeAccess;
  /** The InferencePool followed (null with a plain pod selector). */
  pool: { namespace: string; name: string } | null;
  discovery: KubernetesDiscovery;
  metrics: KubernetesMetrics;
}

/**
 * Kubernetes discovery for a service, when its settings ask for it (null otherwise): credentials,
 * the pod watcher as a discovery source, and the metrics both register.
 */
export function createKubernetesRuntime(settings: KubernetesSettings, ingest: IngestDefaults, deps: { registry: Registry; logger: Logger }): KubernetesRuntime | null {
  if (!kubernetesEnabled(settings)) return null;
  const access = loadKubeAccess(settings);
  const ref = settings.inferencePool === undefined ? null : parsePoolRef(settings.inferencePool);
  const pool = ref === null ? null : { namespace: ref.namespace ?? access.namespace, name: ref.name };
  const metrics = new KubernetesMetrics(deps.registry);
  const defaults: TargetDefaults = { eventPort: ingest.defaultEventPort, replayPort: ingest.defaultReplayPort, model: ingest.defaultModel, eventsByPod: ingest.mode === 'per-pod' };
  const discovery = new KubernetesDiscovery({ access, settings, pool, defaults, metrics, logger: deps.logger.child({ discovery: 'kubernetes' }) });
  return { access, pool, discovery, metrics };
}
