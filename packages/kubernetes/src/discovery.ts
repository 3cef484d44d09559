import { CoreV1Api, CustomObjectsApi, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import type { DiscoverySource, PodTarget } from '@kvix/kv-ingest';
import type { Logger } from 'pino';
import { describeApiError, KubernetesError, statusOf } from './errors.js';
import { INFERENCE_POOL, InferencePoolSchema, type InferencePool } from './gaie.js';
import type { KubeAccess } from './kubeconfig.js';
import type { KubernetesMetrics } from './metrics.js';
import { podView, type PodState, type PodView, type TargetDefaults } from './pod-targets.js';
import { Reflector } from './reflector.js';
import type { KubernetesSettings } from './settings.js';

export interface KubernetesDiscoveryOptions {
  access: KubeAccess;
  settings: KubernetesSettings;
  /** The pool (when discovery follows an InferencePool): namespace and name. */
  pool: { namespace: string; name: string } | null;
  defaults: TargetDefaults;
  metrics: KubernetesMetrics | null;
  logger: Logger;
}

/** What the pool currently asks for: which pods, on which ports. */
interface Selection {
  labelSelector: string;
  ports: readonly number[];
}

export interface PoolListener {
  (pool: InferencePool | null): void;
}

/**
 * Pods from the Kubernetes API: those an InferencePool selects (its selector and targetPorts
 * followed live: a new selector re-lists the pods, new ports re-map them) or those a label selector
 * matches. Every replica watches on its own (no leader); a pod is an endpoint only while it is
 * Ready, has an IP and is not being deleted.
 */
export class KubernetesDiscovery implements DiscoverySource {
  readonly name = 'kubernetes';
  private poolReflector: Reflector | null = null;
  private podReflector: Reflector | null = null;
  private selection: Selection | null = null;
  private currentPool: InferencePool | null = null;
  private onSnapshot: ((targets: readonly PodTarget[]) => void) | null = null;
  private lastSignature: string | null = null;
  private readonly podStates = new Map<string, PodState>();
  private readonly loggedProblems = new Map<string, string>();
  private readonly poolListeners = new Set<PoolListener>();
  /** Pod watches are replaced one at a time, in order. */
  private switching: Promise<void> = Promise.resolve();
  private stopped = false;
  private poolFollowed = false;
  private readonly core: CoreV1Api;
  private readonly custom: CustomObjectsApi;

  constructor(private readonly options: KubernetesDiscoveryOptions) {
    this.core = options.access.config.makeApiClient(CoreV1Api);
    this.custom = options.access.config.makeApiClient(CustomObjectsApi);
  }

  private get namespace(): string {
    return this.options.pool?.namespace ?? this.options.access.namespace;
  }

  /** The pool as last seen (null before it exists, or when following a plain selector). */
  get pool(): InferencePool | null {
    return this.currentPool;
  }

  /** Calls `listener` whenever the pool object changes (appears, is edited, is deleted). */
  onPool(listener: PoolListener): () => void {
    this.poolListeners.add(listener);
    return () => this.poolListeners.delete(listener);
  }

  async start(onSnapshot: (targets: readonly PodTarget[]) => void): Promise<void> {
    this.onSnapshot = onSnapshot;
    const { pool, settings, logger } = this.options;
    if (pool === null) {
      await this.select({ labelSelector: settings.podSelector!, ports: settings.targetPorts });
      logger.info({ namespace: this.namespace, selector: settings.podSelector, targetPorts: settings.targetPorts, credentials: this.options.access.source }, 'following pods from the Kubernetes API');
      return;
    }
    this.poolReflector = new Reflector({
      resource: INFERENCE_POOL.plural,
      path: `/apis/${INFERENCE_POOL.group}/${INFERENCE_POOL.version}/namespaces/${pool.namespace}/${INFERENCE_POOL.plural}`,
      fieldSelector: `metadata.name=${pool.name}`,
      list: () => this.listCustom(INFERENCE_POOL.group, INFERENCE_POOL.version, INFERENCE_POOL.plural, `metadata.name=${pool.name}`),
      kube: this.options.access.config,
      watchTimeoutSeconds: settings.watchTimeoutSeconds,
      metrics: this.options.metrics,
      logger,
      // Until start() has applied the first list itself (and can fail on it), changes wait for it.
      onChange: () => {
        if (this.poolFollowed) void this.poolChanged().catch(() => undefined);
      },
      fatalOnStart: [401, 403, 404],
      startTimeoutMs: settings.startTimeoutMs,
    });
    try {
      await this.poolReflector.start();
    } catch (err) {
      throw startError(err, `InferencePool ${pool.namespace}/${pool.name}`, INFERENCE_POOL);
    }
    await this.poolChanged();
    this.poolFollowed = true;
    // Whatever changed while the first pods were listed.
    await this.poolChanged();
    logger.info({ pool: `${pool.namespace}/${pool.name}`, found: this.currentPool !== null, credentials: this.options.access.source }, 'following the InferencePool from the Kubernetes API');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.onSnapshot = null;
    await this.poolReflector?.stop();
    await this.switching;
    await this.podReflector?.stop();
  }

  /** The pool object changed: follow its selector and ports. */
  private poolChanged(): Promise<void> {
    const { pool, logger } = this.options;
    const raw = this.poolReflector?.items().find((o) => o.metadata?.name === pool!.name);
    let next: InferencePool | null = null;
    if (raw !== undefined) {
      const parsed = InferencePoolSchema.safeParse(raw);
      if (parsed.success) next = parsed.data;
      else logger.warn({ pool: `${pool!.namespace}/${pool!.name}`, err: parsed.error.issues[0]?.message }, 'InferencePool spec unusable; keeping the last good one');
      if (!parsed.success) return this.switching;
    }
    const before = this.currentPool;
    this.currentPool = next;
    if (before?.metadata.resourceVersion !== next?.metadata.resourceVersion) for (const l of this.poolListeners) l(next);
    if (next === null) {
      if (before !== null || this.selection === null) logger.warn({ pool: `${pool!.namespace}/${pool!.name}` }, 'InferencePool not found: no endpoints until it exists');
      return this.select(null);
    }
    const labelSelector = Object.entries(next.spec.selector.matchLabels)
      .map(([k, v]) => `${k}=${v}`)
      .sort()
      .join(',');
    return this.select({ labelSelector, ports: next.spec.targetPorts.map((p) => p.number) });
  }

  /**
   * Switches the pod watch to a new selection (null: none). Same selector, new ports: no re-list.
   * At startup a failure rejects (the service cannot start); later it is logged and the new watch
   * keeps retrying on its own.
   */
  private select(next: Selection | null): Promise<void> {
    const initial = this.selection === null && this.podReflector === null && this.lastSignature === null;
    const run = this.switching.then(async () => {
      if (this.stopped) return;
      const prev = this.selection;
      this.selection = next;
      if (next !== null && prev !== null && prev.labelSelector === next.labelSelector) {
        if (prev.ports.join() !== next.ports.join()) this.options.logger.info({ targetPorts: next.ports }, 'pool target ports changed');
        this.publish();
        return;
      }
      const old = this.podReflector;
      this.podReflector = null;
      await old?.stop();
      if (next !== null) {
        if (prev !== null) this.options.logger.info({ selector: next.labelSelector }, 'pool selector changed: re-listing pods');
        const reflector = this.podWatch(next.labelSelector, initial);
        this.podReflector = reflector;
        try {
          await reflector.start();
        } catch (err) {
          if (initial) {
            this.podReflector = null;
            await reflector.stop();
            throw startError(err, `pods (${next.labelSelector}) in ${this.namespace}`, null);
          }
          this.options.logger.error({ selector: next.labelSelector, err: describeApiError(err) }, 'cannot list the pool\'s pods yet; still trying');
        }
      }
      this.publish();
    });
    this.switching = run.catch(() => undefined);
    return run;
  }

  private podWatch(labelSelector: string, failFast: boolean): Reflector {
    const ns = this.namespace;
    return new Reflector({
      resource: 'pods',
      path: `/api/v1/namespaces/${ns}/pods`,
      labelSelector,
      list: () => this.core.listNamespacedPod({ namespace: ns, labelSelector }) as Promise<KubernetesListObject<KubernetesObject>>,
      kube: this.options.access.config,
      watchTimeoutSeconds: this.options.settings.watchTimeoutSeconds,
      metrics: this.options.metrics,
      logger: this.options.logger,
      onChange: () => this.publish(),
      fatalOnStart: failFast ? [401, 403] : [],
      startTimeoutMs: this.options.settings.startTimeoutMs,
    });
  }

  private listCustom(group: string, version: string, plural: string, fieldSelector: string): Promise<KubernetesListObject<KubernetesObject>> {
    return this.custom.listNamespacedCustomObject({ group, version, namespace: this.namespace, plural, fieldSelector }) as Promise<KubernetesListObject<KubernetesObject>>;
  }

  /** Recomputes the endpoints from the pods held and hands them on when they changed. */
  private publish(): void {
    if (this.stopped || this.onSnapshot === null) return;
    const ports = this.selection?.ports ?? [];
    const views: PodView[] = [];
    for (const pod of this.podReflector?.items() ?? []) {
      const view = podView(pod, ports, this.options.defaults);
      if (view) views.push(view);
    }
    this.track(views);
    const targets: PodTarget[] = [];
    const ids = new Set<string>();
    for (const v of views) {
      for (const t of v.targets) {
        // Two pods cannot share an IP and port; a stale object during an IP reuse would, briefly.
        if (ids.has(t.id)) continue;
        ids.add(t.id);
        targets.push(t);
      }
    }
    targets.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const signature = JSON.stringify(targets);
    if (signature === this.lastSignature) return;
    this.lastSignature = signature;
    this.onSnapshot(targets);
  }

  /** One log line per pod state change (and per new annotation problem), and the state gauge. */
  private track(views: readonly PodView[]): void {
    const { logger, metrics } = this.options;
    const seen = new Set<string>();
    const counts: Record<PodState, number> = { ready: 0, not_ready: 0, terminating: 0, no_ip: 0 };
    for (const v of views) {
      seen.add(v.key);
      counts[v.state]++;
      const before = this.podStates.get(v.key);
      if (before !== v.state) {
        this.podStates.set(v.key, v.state);
        if (v.state === 'ready') logger.info({ pod: v.key, endpoints: v.targets.map((t) => t.id) }, 'pod ready: serving');
        else if (before === 'ready') logger.info({ pod: v.key, state: v.state }, 'pod left the endpoints');
      }
      const problems = v.problems.join('; ');
      if (problems !== '' && this.loggedProblems.get(v.key) !== problems) logger.warn({ pod: v.key, problems: v.problems }, 'pod annotations ignored');
      this.loggedProblems.set(v.key, problems);
    }
    for (const key of [...this.podStates.keys()]) {
      if (seen.has(key)) continue;
      if (this.podStates.get(key) === 'ready') logger.info({ pod: key }, 'pod gone: removed from the endpoints');
      this.podStates.delete(key);
      this.loggedProblems.delete(key);
    }
    if (metrics) for (const [state, n] of Object.entries(counts)) metrics.poolPods.set({ state }, n);
  }
}

/** A failure to start watching, with what to do about it. */
function startError(err: unknown, what: string, kind: typeof INFERENCE_POOL | null): Error {
  if (err instanceof KubernetesError) return err;
  const status = statusOf(err);
  if (status === 404 && kind !== null) {
    return new KubernetesError('CRD_NOT_INSTALLED', `cannot watch ${what}: the ${kind.kind} CRD (${kind.group}/${kind.version}) is not installed; install the Gateway API Inference Extension CRDs (see docs/kubernetes.md)`, { cause: err });
  }
  if (status === 401) return new KubernetesError('UNAUTHORIZED', `cannot watch ${what}: the API server rejected the credentials (${describeApiError(err)})`, { cause: err });
  if (status === 403) return new KubernetesError('FORBIDDEN', `cannot watch ${what}: forbidden (${describeApiError(err)}); the service account needs get/list/watch on it (the chart's Role grants it)`, { cause: err });
  return new KubernetesError('UNREACHABLE', `cannot watch ${what}: ${err instanceof Error ? err.message : describeApiError(err)}`, { cause: err });
}
