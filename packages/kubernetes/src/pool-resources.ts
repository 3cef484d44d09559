import { CustomObjectsApi, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { describeApiError } from './errors.js';
import {
  creationTime,
  InferenceModelRewriteSchema,
  InferenceObjectiveSchema,
  modelRewriteKind,
  objectiveKind,
  POLICY_GROUPS,
  refersToPool,
  type InferenceModelRewrite,
  type InferenceObjective,
  type PolicyGroup,
  type ResourceKind,
} from './gaie.js';
import type { KubeAccess } from './kubeconfig.js';
import type { KubernetesMetrics } from './metrics.js';
import { Reflector } from './reflector.js';
import type { ConditionReport, StatusWriter } from './status.js';

/** One rewrite rule as the router applies it, in precedence order (see PoolResources.rules). */
export interface PoolRewriteRule {
  /** The InferenceModelRewrite's name (metrics name the rule by it, as GAIE's EPP does; the pool's resources share one namespace). */
  source: string;
  /** Exact model names it matches; empty: every request (a generic rule). */
  models: readonly string[];
  /** Weighted targets; weights all 0 means equal shares, as GAIE's EPP does. */
  targets: readonly { model: string; weight: number }[];
}

export interface PoolObjective {
  /** The InferenceObjective's name: what requests carry in x-gateway-inference-objective. */
  name: string;
  priority: number;
}

export interface PoolResourcesState {
  rewrites: readonly PoolRewriteRule[];
  objectives: readonly PoolObjective[];
}

type Kind = 'rewrites' | 'objectives';

interface Watched {
  kind: Kind;
  group: PolicyGroup;
  resource: ResourceKind;
  reflector: Reflector;
  /** Listed at least once and not answered 404 since: the CRD is installed. */
  installed: boolean;
  forbidden: boolean;
}

export interface PoolResourcesOptions {
  access: KubeAccess;
  pool: { namespace: string; name: string };
  watchTimeoutSeconds: number;
  /** How long start() waits to learn which CRDs exist before carrying on (resources then apply when they arrive). */
  settleTimeoutMs: number;
  metrics: KubernetesMetrics | null;
  status: StatusWriter | null;
  logger: Logger;
  onChange: (state: PoolResourcesState) => void;
}

const KIND_NAMES: Record<Kind, string> = { rewrites: 'InferenceModelRewrite', objectives: 'InferenceObjective' };

/**
 * The pool's InferenceModelRewrite and InferenceObjective resources, read live. Both exist in two
 * API groups (GAIE v1.5.0's inference.networking.x-k8s.io and llm-d's llm-d.ai, same schema);
 * the llm-d.ai group wins when both are installed. A kind whose CRD is absent is off (logged once)
 * and is picked up if its CRD is installed later.
 */
export class PoolResources {
  private readonly watched: Watched[] = [];
  private readonly absentLogged = new Set<Kind>();
  private readonly activeGroup = new Map<Kind, PolicyGroup | null>();
  private lastSignature = '';
  private stopped = false;
  /** Until every kind is known to be installed or not, nothing is applied or logged. */
  private started = false;

  constructor(private readonly options: PoolResourcesOptions) {
    const api = options.access.config.makeApiClient(CustomObjectsApi);
    const ns = options.pool.namespace;
    for (const group of POLICY_GROUPS) {
      for (const kind of ['rewrites', 'objectives'] as const) {
        const resource = kind === 'rewrites' ? modelRewriteKind(group) : objectiveKind(group);
        const entry: Watched = {
          kind,
          group,
          resource,
          installed: false,
          forbidden: false,
          reflector: new Reflector({
            resource: `${resource.plural}.${group}`,
            path: `/apis/${group}/${resource.version}/namespaces/${ns}/${resource.plural}`,
            list: () => api.listNamespacedCustomObject({ group, version: resource.version, namespace: ns, plural: resource.plural }) as Promise<KubernetesListObject<KubernetesObject>>,
            kube: options.access.config,
            watchTimeoutSeconds: options.watchTimeoutSeconds,
            metrics: options.metrics,
            logger: options.logger,
            onChange: () => {
              entry.installed = true;
              entry.forbidden = false;
              if (this.started) this.recompute();
            },
            onError: (status, err) => this.failed(entry, status, err),
            quietStatuses: [403, 404],
            // An absent CRD is asked about every 10 s, so installing it takes effect soon after.
            retryMaxMs: 10_000,
            startTimeoutMs: options.settleTimeoutMs,
          }),
        };
        this.watched.push(entry);
      }
    }
  }

  /** Starts every watch; resolves once each kind is known to be installed or not (bounded by settleTimeoutMs). */
  async start(): Promise<void> {
    await Promise.all(
      this.watched.map(
        (w) =>
          new Promise<void>((resolve) => {
            const check = setInterval(() => {
              if (w.installed || w.forbidden || this.absent(w)) done();
            }, 20);
            const done = (): void => {
              clearInterval(check);
              resolve();
            };
            w.reflector.start().then(done, done);
          }),
      ),
    );
    this.started = true;
    this.recompute(true);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.watched.map((w) => w.reflector.stop()));
  }

  private readonly notFound = new Set<Watched>();

  private absent(w: Watched): boolean {
    return this.notFound.has(w);
  }

  private failed(w: Watched, status: number | null, err: unknown): void {
    if (status === 404) {
      this.notFound.add(w);
      if (w.installed) {
        w.installed = false;
        this.options.logger.warn({ kind: w.resource.kind, group: w.group }, 'CRD removed: its resources no longer apply');
        if (this.started) this.recompute();
      }
    } else if (status === 403 && !w.forbidden) {
      w.forbidden = true;
      this.options.logger.warn({ kind: w.resource.kind, group: w.group, err: describeApiError(err) }, 'forbidden to read these resources: grant get/list/watch (the chart\'s Role does); they do not apply meanwhile');
      if (this.started) this.recompute();
    }
  }

  /** The group each kind is read from now (llm-d.ai when installed), or null. */
  groups(): Readonly<Record<Kind, PolicyGroup | null>> {
    return { rewrites: this.activeGroup.get('rewrites') ?? null, objectives: this.activeGroup.get('objectives') ?? null };
  }

  private recompute(initial = false): void {
    if (this.stopped) return;
    for (const w of this.watched) if (w.installed) this.notFound.delete(w);
    const state: { rewrites: PoolRewriteRule[]; objectives: PoolObjective[] } = { rewrites: [], objectives: [] };
    for (const kind of ['rewrites', 'objectives'] as const) {
      const source = POLICY_GROUPS.map((g) => this.watched.find((w) => w.kind === kind && w.group === g)!).find((w) => w.installed && !w.forbidden) ?? null;
      const before = this.activeGroup.get(kind);
      this.activeGroup.set(kind, source?.group ?? null);
      if ((before ?? null) !== (source?.group ?? null) || initial) this.logSource(kind, source, initial);
      if (source === null) continue;
      if (kind === 'rewrites') state.rewrites = this.rewriteRules(source);
      else state.objectives = this.objectives(source);
    }
    this.options.metrics?.resourcesApplied.set({ kind: 'InferenceModelRewrite' }, new Set(state.rewrites.map((r) => r.source)).size);
    this.options.metrics?.resourcesApplied.set({ kind: 'InferenceObjective' }, state.objectives.length);
    const signature = JSON.stringify(state);
    if (signature === this.lastSignature && !initial) return;
    this.lastSignature = signature;
    this.options.onChange(state);
  }

  private logSource(kind: Kind, source: Watched | null, initial: boolean): void {
    const { logger } = this.options;
    if (source === null) {
      const forbidden = this.watched.some((w) => w.kind === kind && w.forbidden);
      if (!this.absentLogged.has(kind) && !forbidden) {
        this.absentLogged.add(kind);
        logger.info({ kind: KIND_NAMES[kind], groups: POLICY_GROUPS }, `${KIND_NAMES[kind]} CRD not installed: off (it is picked up if installed later)`);
      } else if (!initial && !forbidden) logger.info({ kind: KIND_NAMES[kind] }, `${KIND_NAMES[kind]} resources no longer available: off`);
      return;
    }
    logger.info({ kind: KIND_NAMES[kind], group: source.group }, `${KIND_NAMES[kind]} resources of the pool apply live`);
  }

  /** Resources of this kind that name our pool, valid ones parsed, the others reported. */
  private ofPool<S extends z.ZodType<{ metadata: { name: string }; spec: { poolRef: { name: string; group?: string | undefined; kind?: string | undefined } } }>>(w: Watched, schema: S): z.output<S>[] {
    const out: z.output<S>[] = [];
    for (const raw of w.reflector.items()) {
      const poolRef = (raw as { spec?: { poolRef?: { name?: unknown } } }).spec?.poolRef;
      if (typeof poolRef?.name === 'string' && poolRef.name !== this.options.pool.name) continue;
      const parsed = schema.safeParse(raw);
      if (!parsed.success) {
        this.report(w, raw, { accepted: false, reason: 'Invalid', message: `kvix cannot read it: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}` });
        continue;
      }
      if (!refersToPool(parsed.data.spec.poolRef, this.options.pool.name)) continue;
      out.push(parsed.data);
    }
    return out;
  }

  /**
   * GAIE's precedence: rules with an exact model match before generic ones (no matches); among
   * either, the oldest resource first (creation time, then name for a stable order); within a
   * resource, list order. The router takes the first rule that matches.
   */
  private rewriteRules(w: Watched): PoolRewriteRule[] {
    const resources = this.ofPool(w, InferenceModelRewriteSchema).sort(byAge);
    const exact: PoolRewriteRule[] = [];
    const generic: PoolRewriteRule[] = [];
    for (const r of resources) {
      const problems = rewriteProblems(r);
      if (problems.length > 0) {
        this.report(w, r, { accepted: false, reason: 'Invalid', message: problems.join('; ') });
        continue;
      }
      const source = r.metadata.name;
      let rules = 0;
      for (const rule of r.spec.rules) {
        const targets = (rule.targets ?? []).map((t) => ({ model: t.modelRewrite, weight: t.weight ?? 0 }));
        // A rule without targets rewrites nothing (GAIE's EPP would blank the model; kvix leaves it).
        if (targets.length === 0) continue;
        const models = (rule.matches ?? []).map((m) => m.model.value);
        (models.length === 0 ? generic : exact).push({ source, models, targets });
        rules++;
      }
      this.report(w, r, { accepted: true, reason: 'Accepted', message: `applied by the kvix endpoint picker of pool ${this.options.pool.name} (${rules} rule${rules === 1 ? '' : 's'})` });
    }
    return [...exact, ...generic];
  }

  /** Priority unset is 0, as GAIE specifies. Names are unique in a namespace, so no precedence is needed. */
  private objectives(w: Watched): PoolObjective[] {
    return this.ofPool(w, InferenceObjectiveSchema)
      .sort(byAge)
      .map((o: InferenceObjective) => {
        const priority = o.spec.priority ?? 0;
        this.report(w, o, { accepted: true, reason: 'Accepted', message: `applied by the kvix endpoint picker of pool ${this.options.pool.name} (priority ${priority}${priority < 0 ? ': sheddable when the pool is saturated' : ''})` });
        return { name: o.metadata.name, priority };
      });
  }

  private report(w: Watched, raw: unknown, condition: ConditionReport): void {
    this.options.status?.condition(w.resource, raw, condition);
  }
}

function byAge(a: { metadata: { name: string; creationTimestamp?: string | Date | undefined } }, b: { metadata: { name: string; creationTimestamp?: string | Date | undefined } }): number {
  return creationTime(a.metadata) - creationTime(b.metadata) || (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0);
}

/** GAIE's rule: a weight on one target means a weight on every target of the rule. */
function rewriteProblems(r: InferenceModelRewrite): string[] {
  const problems: string[] = [];
  r.spec.rules.forEach((rule, i) => {
    const weights = (rule.targets ?? []).map((t) => t.weight);
    const set = weights.filter((x) => x !== undefined && x !== 0).length;
    if (set > 0 && set < weights.length) problems.push(`rules[${i}]: set a weight on every target or on none`);
  });
  return problems;
}
