import type { ModelRewrite } from '../config.js';

/**
 * Model aliasing (llm-d's InferenceModelRewrite): a client's model name is served by one of
 * several target models, chosen by weight per request. The x-llm-d-model-name-rewrite header
 * names a target outright.
 */
export class ModelRewriter {
  private readonly rules: Map<string, ModelRewrite>;

  constructor(
    rules: readonly ModelRewrite[],
    private readonly random: () => number = Math.random,
  ) {
    this.rules = new Map(rules.map((r) => [r.model, r]));
  }

  get aliases(): string[] {
    return [...this.rules.keys()];
  }

  target(clientModel: string, headerOverride: string | undefined): string {
    return this.resolve(clientModel, headerOverride).target;
  }

  /** The target model and the rule that chose it (null when no rule applied). */
  resolve(clientModel: string, headerOverride: string | undefined): { target: string; rule: string | null } {
    if (headerOverride) return { target: headerOverride, rule: null };
    const rule = this.rules.get(clientModel);
    if (!rule) return { target: clientModel, rule: null };
    const name = rule.name ?? rule.model;
    const targets = rule.targets;
    const total = targets.reduce((a, t) => a + t.weight, 0);
    let r = this.random() * total;
    for (const t of targets) if ((r -= t.weight) < 0) return { target: t.model, rule: name };
    return { target: targets[targets.length - 1]!.model, rule: name };
  }
}
