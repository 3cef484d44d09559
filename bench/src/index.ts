export { runIndexBenchmark, type IndexBenchmarkOptions, type IndexBenchmarkSummary } from './index/index-bench.js';
