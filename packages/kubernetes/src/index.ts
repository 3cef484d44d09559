// Values exported here load nothing of @kubernetes/client-node: services import this package
// whether or not they use Kubernetes, and createKubernetesRuntime loads the client when they do.
export { KubernetesSettingsSchema, KUBERNETES_ENV_BINDINGS, KUBERNETES_FLAG_BINDINGS, addKubernetesOptions, targetPortsFromStrings, kubernetesEnabled, parsePoolRef, type KubernetesSettings, type KubernetesSettingsInput } from './settings.js';
export { KubernetesError, type KubernetesErrorCode } from './errors.js';
export { KubernetesMetrics } from './metrics.js';
export { POD_ANNOTATIONS, POD_LABELS, podView, type PodView, type PodState, type TargetDefaults } from './pod-targets.js';
export { INFERENCE_POOL, POLICY_GROUPS, modelRewriteKind, objectiveKind, type InferencePool, type PolicyGroup, type ResourceKind } from './gaie.js';
export { createKubernetesRuntime, type KubernetesRuntime, type IngestDefaults, type PoolFollowOptions } from './runtime.js';
export type { KubeAccess } from './kubeconfig.js';
export type { Reflector, ReflectorOptions } from './reflector.js';
export type { KubernetesDiscovery, KubernetesDiscoveryOptions } from './discovery.js';
export type { PoolResources, PoolResourcesOptions, PoolResourcesState, PoolRewriteRule, PoolObjective } from './pool-resources.js';
export type { StatusWriter, PoolEvents, ConditionReport } from './status.js';
