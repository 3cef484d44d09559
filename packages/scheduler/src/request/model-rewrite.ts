import type { ModelRewrite } from '../config.js';

/**
 * A rewrite rule from the cluster (an InferenceModelRewrite rule): which models it matches (none:
 * every request) and its weighted targets. Weights all 0 mean equal shares.
 */
export interface PoolRewriteRule {
  /** The InferenceModelRewrite's name (the rule name in metrics, as GAIE's EPP reports it). */
  source: string;
  models: readonly string[];
  targets: readonly { model: string; weight: number }[];
}

interface Rule {
  /** The rule's name in metrics. */
  name: string;
  targets: readonly { model: string; weight: number }[];
}

/**
 * Model aliasing (GAIE's and llm-d's InferenceModelRewrite): a client's model name is served by one
 * of several target models, chosen by weight per request. Rules come from the scheduler
 * configuration and, live, from the pool's InferenceModelRewrite resources. Precedence: the pool's
 * exact-match rules (already ordered oldest resource first), then the configuration's, then the
 * pool's generic rule. The x-llm-d-model-name-rewrite header names a target outright.
 */
export class ModelRewriter {
  private readonly configRules: Map<string, Rule>;
  private poolExact = new Map<string, Rule>();
  private poolGeneric: Rule | null = null;

  constructor(
    rules: readonly ModelRewrite[],
    private readonly random: () => number = Math.random,
  ) {
    this.configRules = new Map(rules.map((r) => [r.model, { name: r.name ?? r.model, targets: r.targets }]));
  }

  /** Replaces the pool's rules (first rule per model wins, as given). */
  setPoolRules(rules: readonly PoolRewriteRule[]): void {
    const exact = new Map<string, Rule>();
    let generic: Rule | null = null;
    for (const r of rules) {
      if (r.targets.length === 0) continue;
      const rule = { name: r.source, targets: r.targets };
      if (r.models.length === 0) generic ??= rule;
      else for (const m of r.models) if (!exact.has(m)) exact.set(m, rule);
    }
    this.poolExact = exact;
    this.poolGeneric = generic;
  }

  get aliases(): string[] {
    return [...new Set([...this.poolExact.keys(), ...this.configRules.keys()])];
  }

  /** Every rule in force, for the debug API (`model` null: the generic rule). */
  describe(): { model: string | null; rule: string; source: 'InferenceModelRewrite' | 'scheduler-config'; targets: readonly { model: string; weight: number }[] }[] {
    return [
      ...[...this.poolExact].map(([model, r]) => ({ model, rule: r.name, source: 'InferenceModelRewrite' as const, targets: r.targets })),
      ...[...this.configRules].filter(([m]) => !this.poolExact.has(m)).map(([model, r]) => ({ model, rule: r.name, source: 'scheduler-config' as const, targets: r.targets })),
      ...(this.poolGeneric ? [{ model: null, rule: this.poolGeneric.name, source: 'InferenceModelRewrite' as const, targets: this.poolGeneric.targets }] : []),
    ];
  }

  target(clientModel: string, headerOverride: string | undefined): string {
    return this.resolve(clientModel, headerOverride).target;
  }

  /** The target model and the rule that chose it (null when no rule applied, or the header named it). */
  resolve(clientModel: string, headerOverride: string | undefined): { target: string; rule: string | null } {
    if (headerOverride) return { target: headerOverride, rule: null };
    const rule = this.poolExact.get(clientModel) ?? this.configRules.get(clientModel) ?? this.poolGeneric;
    if (!rule) return { target: clientModel, rule: null };
    return { target: this.pick(rule.targets), rule: rule.name };
  }

  private pick(targets: readonly { model: string; weight: number }[]): string {
    const total = targets.reduce((a, t) => a + t.weight, 0);
    if (total <= 0) return targets[Math.min(targets.length - 1, Math.floor(this.random() * targets.length))]!.model;
    let r = this.random() * total;
    for (const t of targets) if ((r -= t.weight) < 0) return t.model;
    return targets[targets.length - 1]!.model;
  }
}
