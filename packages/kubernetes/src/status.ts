import { CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { describeApiError, statusOf } from './errors.js';
import { INFERENCE_POOL, type ResourceKind } from './gaie.js';
import type { KubeAccess } from './kubeconfig.js';

export interface ConditionReport {
  accepted: boolean;
  /** CamelCase, e.g. Accepted, Invalid. */
  reason: string;
  message: string;
}

interface ObjectMeta {
  name?: string;
  namespace?: string;
  generation?: number;
  uid?: string;
}

interface Condition {
  type?: string;
  status?: string;
  reason?: string;
  message?: string;
  observedGeneration?: number;
}

const EVENT_COMPONENT = 'kvix-epp';

/**
 * Where operators look: an `Accepted` condition on each InferenceModelRewrite/InferenceObjective the
 * EPP applies (or rejects, with why), and Events on the InferencePool when its endpoints come and
 * go. Every replica reports; a condition already saying the same thing is not written again, so
 * replicas agree rather than fight.
 */
export class StatusWriter {
  private readonly custom: CustomObjectsApi;
  private readonly core: CoreV1Api;
  /** uid → the condition last written or being written (identical reports are not re-sent). */
  private readonly written = new Map<string, string>();
  private readonly disabled = new Set<string>();

  constructor(
    private readonly access: KubeAccess,
    private readonly replicaId: string,
    private readonly logger: Logger,
  ) {
    this.custom = access.config.makeApiClient(CustomObjectsApi);
    this.core = access.config.makeApiClient(CoreV1Api);
  }

  /** Sets the Accepted condition of a resource, unless it already says exactly this. */
  condition(kind: ResourceKind, raw: unknown, report: ConditionReport): void {
    const obj = raw as { metadata?: ObjectMeta; status?: { conditions?: Condition[] } };
    const meta = obj.metadata;
    if (!meta?.name || !meta.namespace || this.disabled.has(kind.plural)) return;
    const status = report.accepted ? 'True' : 'False';
    const current = obj.status?.conditions?.find((c) => c.type === 'Accepted');
    if (current && current.status === status && current.reason === report.reason && current.message === report.message && current.observedGeneration === meta.generation) return;
    const key = `${meta.uid ?? `${meta.namespace}/${meta.name}`}`;
    const signature = `${meta.generation}|${status}|${report.reason}|${report.message}`;
    if (this.written.get(key) === signature) return;
    this.written.set(key, signature);
    const condition = {
      type: 'Accepted',
      status,
      reason: report.reason,
      message: report.message.slice(0, 32_000),
      lastTransitionTime: current && current.status === status ? undefined : new Date().toISOString(),
      ...(meta.generation !== undefined ? { observedGeneration: meta.generation } : {}),
    };
    if (condition.lastTransitionTime === undefined) condition.lastTransitionTime = (current as { lastTransitionTime?: string } | undefined)?.lastTransitionTime ?? new Date().toISOString();
    // Merge patch replaces the list; Accepted is the only condition these kinds define.
    const others = (obj.status?.conditions ?? []).filter((c) => c.type !== 'Accepted');
    void this.custom
      .patchNamespacedCustomObjectStatus(
        { group: kind.group, version: kind.version, namespace: meta.namespace, plural: kind.plural, name: meta.name, body: { status: { conditions: [...others, condition] } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      )
      .catch((err: unknown) => {
        this.written.delete(key);
        const code = statusOf(err);
        if (code === 404) return; // deleted meanwhile
        if (code === 403) {
          this.disabled.add(kind.plural);
          this.logger.warn({ kind: kind.kind, group: kind.group, err: describeApiError(err) }, 'forbidden to write status conditions: grant patch on their /status (the chart\'s Role does); not reporting them');
          return;
        }
        this.logger.warn({ kind: kind.kind, name: meta.name, err: describeApiError(err) }, 'could not write a status condition');
      });
  }

  /** Records an Event on the pool (kubectl describe inferencepool shows it). */
  poolEvent(pool: { namespace: string; name: string; uid?: string | undefined }, type: 'Normal' | 'Warning', reason: string, message: string): void {
    if (this.disabled.has('events')) return;
    const now = new Date();
    void this.core
      .createNamespacedEvent({
        namespace: pool.namespace,
        body: {
          metadata: { generateName: `${pool.name}.` },
          involvedObject: { apiVersion: `${INFERENCE_POOL.group}/${INFERENCE_POOL.version}`, kind: INFERENCE_POOL.kind, name: pool.name, namespace: pool.namespace, ...(pool.uid ? { uid: pool.uid } : {}) },
          type,
          reason,
          message: message.slice(0, 1024),
          source: { component: EVENT_COMPONENT },
          reportingComponent: 'kvix.io/epp',
          reportingInstance: this.replicaId,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      })
      .catch((err: unknown) => {
        if (statusOf(err) === 403) {
          this.disabled.add('events');
          this.logger.warn({ err: describeApiError(err) }, 'forbidden to create Events: grant create on events (the chart\'s Role does); not recording them');
          return;
        }
        this.logger.warn({ reason, err: describeApiError(err) }, 'could not record an Event on the pool');
      });
  }
}

/** Raises pool Events on transitions the operator cares about (endpoints appear, all gone). */
export class PoolEvents {
  private lastReady: number | null = null;

  constructor(
    private readonly writer: StatusWriter,
    private readonly pool: () => { namespace: string; name: string; uid?: string | undefined } | null,
  ) {}

  endpoints(ready: number): void {
    const before = this.lastReady;
    this.lastReady = ready;
    const pool = this.pool();
    if (pool === null || before === ready) return;
    if (ready === 0 && before !== null && before > 0) this.writer.poolEvent(pool, 'Warning', 'NoEndpoints', 'no ready pod of the pool: requests get 503 until one is Ready');
    else if (ready > 0 && (before === null || before === 0)) this.writer.poolEvent(pool, 'Normal', 'EndpointsReady', `the endpoint picker routes to ${ready} endpoint${ready === 1 ? '' : 's'}`);
  }
}
