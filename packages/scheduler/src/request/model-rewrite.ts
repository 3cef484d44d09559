import type { ModelRewrite } from '../config.js';

/**
 * Model aliasing (llm-d's InferenceModelRewrite): a client's model name is served by one of
 * several target models, chosen by weight per request. The x-llm-d-model-name-rewrite header
 * names a target outright.
 */
export class ModelRewriter {
  private readonly rules: Map<string, ModelRewrite['targets']>;

  constructor(
    rules: readonly ModelRewrite[],
    private readonly random: () => number = Math.random,
  ) {
    this.rules = new Map(rules.map((r) => [r.model, r.targets]));
  }

  get aliases(): string[] {
    return [...this.rules.keys()];
  }

  target(clientModel: string, headerOverride: string | undefined): string {
    if (headerOverride) return headerOverride;
    const targets = this.rules.get(clientModel);
    if (!targets) return clientModel;
    const total = targets.reduce((a, t) => a + t.weight, 0);
    let r = this.random() * total;
    for (const t of targets) if ((r -= t.weight) < 0) return t.model;
    return targets[targets.length - 1]!.model;
  }
}
