export { runIndexBenchmark, type IndexBenchmarkOptions, type IndexBenchmarkSummary } from './index/index-bench.js';
export { runDecisionBenchmark, type DecisionBenchmarkOptions, type DecisionBenchmarkSummary } from './decision/decision-bench.js';
export type { StageInstructions } from './decision/instructions.js';
