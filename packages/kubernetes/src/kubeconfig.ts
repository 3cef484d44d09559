import { existsSync, readFileSync } from 'node:fs';
import { KubeConfig } from '@kubernetes/client-node';
import { KubernetesError } from './errors.js';
import type { KubernetesSettings } from './settings.js';

const SERVICE_ACCOUNT_NAMESPACE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

export interface KubeAccess {
  config: KubeConfig;
  /** The namespace pods (and a pool named without one) are looked up in. */
  namespace: string;
  /** Where the credentials came from, for the startup log. */
  source: string;
}

/**
 * Credentials and default namespace: an explicit kubeconfig file, else client-node's default
 * order ($KUBECONFIG, ~/.kube/config, then the in-cluster service account).
 */
export function loadKubeAccess(settings: Pick<KubernetesSettings, 'kubeconfig' | 'context' | 'namespace'>, env: NodeJS.ProcessEnv = process.env): KubeAccess {
  const config = new KubeConfig();
  let source: string;
  try {
    if (settings.kubeconfig !== undefined) {
      config.loadFromFile(settings.kubeconfig);
      source = settings.kubeconfig;
    } else {
      config.loadFromDefault();
      source = env['KUBECONFIG'] ?? (config.getCurrentContext() === 'inClusterContext' ? 'in-cluster service account' : '~/.kube/config');
    }
    if (settings.context !== undefined) config.setCurrentContext(settings.context);
  } catch (err) {
    throw new KubernetesError('KUBECONFIG', `cannot load Kubernetes credentials${settings.kubeconfig ? ` from ${settings.kubeconfig}` : ''}: ${(err as Error).message}`, { cause: err });
  }
  if (config.getCurrentCluster() === null) {
    throw new KubernetesError('KUBECONFIG', `no Kubernetes cluster configured (${source}): run in a pod with a service account, or pass --kubeconfig`);
  }
  return { config, namespace: settings.namespace ?? defaultNamespace(config, env), source };
}

function defaultNamespace(config: KubeConfig, env: NodeJS.ProcessEnv): string {
  // The chart passes the pod's namespace through the downward API; the service account file says the same.
  if (env['POD_NAMESPACE']) return env['POD_NAMESPACE'];
  if (config.getCurrentContext() === 'inClusterContext' && existsSync(SERVICE_ACCOUNT_NAMESPACE)) {
    const ns = readFileSync(SERVICE_ACCOUNT_NAMESPACE, 'utf8').trim();
    if (ns) return ns;
  }
  return config.getContextObject(config.getCurrentContext())?.namespace ?? 'default';
}
