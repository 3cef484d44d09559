import { createKubernetesRuntime, KubernetesError, type KubernetesRuntime, type PoolResourcesState } from '@kvix/kubernetes';
import { createDiscoverySources, DiscoveryHub } from '@kvix/kv-ingest';
import { ConfigError } from '@kvix/service-kit';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { EppConfig } from './config.js';

/**
 * The EPP's discovery, not started: the configured sources (static pods, endpoints file) and, when
 * the settings ask for Kubernetes, its pod watcher, whose runtime also follows the InferencePool.
 * An unusable kubeconfig is a configuration error (exit 2, one line).
 */
export async function createEppDiscovery(config: EppConfig, deps: { registry: Registry; logger: Logger }): Promise<{ kube: KubernetesRuntime | null; hub: DiscoveryHub }> {
  let kube: KubernetesRuntime | null;
  try {
    kube = await createKubernetesRuntime(config.kubernetes, config.ingest, deps);
  } catch (err) {
    if (err instanceof KubernetesError && err.code === 'KUBECONFIG') throw new ConfigError(err.message);
    throw err;
  }
  return { kube, hub: new DiscoveryHub([...createDiscoverySources(config.ingest, deps.logger), ...(kube ? [kube.discovery] : [])]) };
}

/**
 * The InferencePool's InferenceModelRewrite/InferenceObjective resources, handed to `apply` as they
 * change, and the EPP's status and Events on them and on the pool (as the settings ask), the pool's
 * Events following `hub`'s endpoints.
 */
export function followPool(kube: KubernetesRuntime, deps: { config: EppConfig; hub: DiscoveryHub; logger: Logger; apply: (resources: PoolResourcesState) => void }): Promise<{ stop(): Promise<void> }> {
  const logger = deps.logger.child({ component: 'kubernetes' });
  return kube.followPool({
    replicaId: deps.config.replication.replicaId,
    logger,
    onResources: (resources) => {
      deps.apply(resources);
      logger.info({ rewrites: resources.rewrites.length, objectives: resources.objectives.map((o) => `${o.name}=${o.priority}`) }, 'pool resources applied');
    },
    subscribeTargets: (listener) => deps.hub.subscribe(listener),
  });
}
