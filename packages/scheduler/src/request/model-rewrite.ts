import type { ModelRewrite } from '../config.js';

/**
 * A rewrite rule from the cluster (an InferenceModelRewrite rule): which models it matches (none:
 * every request) and its weighted targets. Weights all 0 mean equal shares.
 */
export interface PoolRewriteRule {
  /** The resource it came from (namespace/name), for metrics and logs. */
  source: string;
  models: readonly string[];
  targets: readonly { model: string; weight: number }[];
}

export interface RewriteDecision {
  model: string;
  /** Which rule decided (a resource name, `scheduler-config`, or `header`); null when none applied. */
  rule: string | null;
}

interface Rule {
  source: string;
  targets: readonly { model: string; weight: number }[];
}

/** Names the rules from the scheduler configuration carry in metrics. */
export const CONFIG_RULE_SOURCE = 'scheduler-config';

/**
 * Model aliasing (GAIE's and llm-d's InferenceModelRewrite): a client's model name is served by one
 * of several target models, chosen by weight per request. Rules come from the scheduler
 * configuration and, live, from the pool's InferenceModelRewrite resources. Precedence: the pool's
 * exact-match rules (already ordered oldest resource first), then the configuration's, then the
 * pool's generic rules. The x-llm-d-model-name-rewrite header names a target outright.
 */
export class ModelRewriter {
  private readonly configRules: Map<string, Rule>;
  private poolExact = new Map<string, Rule>();
  private poolGeneric: Rule | null = null;

  constructor(
    rules: readonly ModelRewrite[],
    private readonly random: () => number = Math.random,
  ) {
    this.configRules = new Map(rules.map((r) => [r.model, { source: CONFIG_RULE_SOURCE, targets: r.targets }]));
  }

  /** Replaces the pool's rules (first rule per model wins, as given). */
  setPoolRules(rules: readonly PoolRewriteRule[]): void {
    const exact = new Map<string, Rule>();
    let generic: Rule | null = null;
    for (const r of rules) {
      if (r.targets.length === 0) continue;
      if (r.models.length === 0) generic ??= r;
      else for (const m of r.models) if (!exact.has(m)) exact.set(m, r);
    }
    this.poolExact = exact;
    this.poolGeneric = generic;
  }

  get aliases(): string[] {
    return [...new Set([...this.poolExact.keys(), ...this.configRules.keys()])];
  }

  /** Every rule in force, for the debug API. */
  describe(): { model: string | null; source: string; targets: readonly { model: string; weight: number }[] }[] {
    return [
      ...[...this.poolExact].map(([model, r]) => ({ model, source: r.source, targets: r.targets })),
      ...[...this.configRules].filter(([m]) => !this.poolExact.has(m)).map(([model, r]) => ({ model, source: r.source, targets: r.targets })),
      ...(this.poolGeneric ? [{ model: null, source: this.poolGeneric.source, targets: this.poolGeneric.targets }] : []),
    ];
  }

  target(clientModel: string, headerOverride: string | undefined): string {
    return this.resolve(clientModel, headerOverride).model;
  }

  resolve(clientModel: string, headerOverride: string | undefined): RewriteDecision {
    if (headerOverride) return { model: headerOverride, rule: 'header' };
    const rule = this.poolExact.get(clientModel) ?? this.configRules.get(clientModel) ?? this.poolGeneric;
    if (!rule) return { model: clientModel, rule: null };
    return { model: this.pick(rule.targets), rule: rule.source };
  }

  private pick(targets: readonly { model: string; weight: number }[]): string {
    const total = targets.reduce((a, t) => a + t.weight, 0);
    if (total <= 0) return targets[Math.min(targets.length - 1, Math.floor(this.random() * targets.length))]!.model;
    let r = this.random() * total;
    for (const t of targets) if ((r -= t.weight) < 0) return t.model;
    return targets[targets.length - 1]!.model;
  }
}
