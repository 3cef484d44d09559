/**
 * What a training server says about its model: type, objective, and (for linear models) the
 * coefficients its /metrics page publishes in Prometheus text (`ttft_intercept{} 12.5`,
 * `ttft_coef{feature="input_token_length"} 0.06`, `training_samples_count{model="ttft",…} 40`).
 */
export interface ModelSnapshot {
  modelType: string | null;
  objectiveType: string | null;
  quantile: number | null;
  ready: boolean | null;
  /** Linear coefficients (llm-d's bayesian_ridge, kvix's built-in model); null for tree models. */
  coefficients: { ttft: Record<string, number>; tpot: Record<string, number> } | null;
  /** Training observations held, per model. */
  trainingSamples: { ttft: number; tpot: number } | null;
  refreshedAt: string;
}

const LINE = /^([A-Za-z_:][A-Za-z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/;
const LABEL = /([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseModelMetrics(text: string): Pick<ModelSnapshot, 'modelType' | 'objectiveType' | 'quantile' | 'coefficients' | 'trainingSamples'> {
  let modelType: string | null = null;
  let objectiveType: string | null = null;
  let quantile: number | null = null;
  const ttft: Record<string, number> = {};
  const tpot: Record<string, number> = {};
  let linear = false;
  const samples = { ttft: 0, tpot: 0 };
  let sawSamples = false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const name = m[1]!;
    const value = Number(m[4]);
    if (!Number.isFinite(value)) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[3] ?? '').matchAll(LABEL)) labels[l[1]!] = l[2]!;
    switch (name) {
      case 'model_type':
        if (value === 1 && labels['type']) modelType = labels['type'];
        break;
      case 'objective_type':
        if (value === 1 && labels['type']) objectiveType = labels['type'];
        break;
      case 'model_quantile':
        quantile = value;
        break;
      case 'ttft_intercept':
        ttft['intercept'] = value;
        break;
      case 'tpot_intercept':
        tpot['intercept'] = value;
        break;
      case 'ttft_coef':
        if (labels['feature']) {
          ttft[labels['feature']] = value;
          linear = true;
        }
        break;
      case 'tpot_coef':
        if (labels['feature']) {
          tpot[labels['feature']] = value;
          linear = true;
        }
        break;
      case 'training_samples_count':
        sawSamples = true;
        if (labels['model'] === 'ttft') samples.ttft += value;
        else if (labels['model'] === 'tpot') samples.tpot += value;
        break;
    }
  }
  return { modelType, objectiveType, quantile, coefficients: linear ? { ttft, tpot } : null, trainingSamples: sawSamples ? samples : null };
}
