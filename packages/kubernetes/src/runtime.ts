import type { DiscoverySource, PodTarget } from '@kvix/kv-ingest';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { InferencePool } from './gaie.js';
import type { KubeAccess } from './kubeconfig.js';
import { KubernetesMetrics } from './metrics.js';
import type { TargetDefaults } from './pod-targets.js';
import type { PoolResourcesState } from './pool-resources.js';
import { kubernetesEnabled, parsePoolRef, type KubernetesSettings } from './settings.js';

/** What a service's ingestion settings contribute to pods found in Kubernetes. */
export interface IngestDefaults {
  mode: 'per-pod' | 'centralized';
  defaultEventPort: number;
  defaultReplayPort: number | null;
  defaultModel: string;
}

export interface PoolFollowOptions {
  /** Names this replica in the Events it records. */
  replicaId: string;
  logger: Logger;
  /** The pool's rewrite rules and objectives, whenever they change. */
  onResources: (resources: PoolResourcesState) => void;
  /** Subscribes to the discovered endpoints (the EPP's discovery hub), for the pool's Events. */
  subscribeTargets: (listener: (targets: readonly PodTarget[]) => void) => () => void;
}

export interface KubernetesRuntime {
  access: KubeAccess;
  /** The InferencePool followed (null with a plain pod selector). */
  pool: { namespace: string; name: string } | null;
  /** The pod watcher, as a discovery source. */
  discovery: DiscoverySource & { readonly pool: InferencePool | null };
  metrics: KubernetesMetrics;
  /**
   * EPP only: the pool's InferenceModelRewrite/InferenceObjective resources (when the settings ask
   * for them) and the EPP's status on them and on the pool (when writeStatus). Resolves once the
   * resources in place were applied.
   */
  followPool(options: PoolFollowOptions): Promise<{ stop(): Promise<void> }>;
}

/**
 * Kubernetes discovery for a service, when its settings ask for it (null otherwise). The client
 * library is loaded only then: importing @kubernetes/client-node takes about a second of CPU (8 s
 * on a loaded 2-core CI machine), which a service that does not use Kubernetes must not pay.
 */
export async function createKubernetesRuntime(settings: KubernetesSettings, ingest: IngestDefaults, deps: { registry: Registry; logger: Logger }): Promise<KubernetesRuntime | null> {
  if (!kubernetesEnabled(settings)) return null;
  const [{ loadKubeAccess }, { KubernetesDiscovery }] = await Promise.all([import('./kubeconfig.js'), import('./discovery.js')]);
  const access = loadKubeAccess(settings);
  const ref = settings.inferencePool === undefined ? null : parsePoolRef(settings.inferencePool);
  const pool = ref === null ? null : { namespace: ref.namespace ?? access.namespace, name: ref.name };
  const metrics = new KubernetesMetrics(deps.registry);
  const defaults: TargetDefaults = { eventPort: ingest.defaultEventPort, replayPort: ingest.defaultReplayPort, model: ingest.defaultModel, eventsByPod: ingest.mode === 'per-pod' };
  const discovery = new KubernetesDiscovery({ access, settings, pool, defaults, metrics, logger: deps.logger.child({ discovery: 'kubernetes' }) });
  return {
    access,
    pool,
    discovery,
    metrics,
    followPool: async (options) => {
      if (pool === null) return { stop: async () => undefined };
      const [{ PoolResources }, { StatusWriter, PoolEvents }] = await Promise.all([import('./pool-resources.js'), import('./status.js')]);
      const status = settings.writeStatus ? new StatusWriter(access, options.replicaId, options.logger) : null;
      let resources: InstanceType<typeof PoolResources> | null = null;
      if (settings.poolResources) {
        resources = new PoolResources({
          access,
          pool,
          watchTimeoutSeconds: settings.watchTimeoutSeconds,
          settleTimeoutMs: Math.min(settings.startTimeoutMs, 10_000),
          metrics,
          status,
          logger: options.logger,
          onChange: options.onResources,
        });
        await resources.start();
      }
      let unsubscribe: (() => void) | null = null;
      if (status) {
        const events = new PoolEvents(status, () => {
          const current = discovery.pool;
          return current ? { ...pool, uid: current.metadata.uid } : null;
        });
        unsubscribe = options.subscribeTargets((targets) => events.endpoints(targets.length));
      }
      return {
        stop: async () => {
          unsubscribe?.();
          await resources?.stop();
        },
      };
    },
  };
}
