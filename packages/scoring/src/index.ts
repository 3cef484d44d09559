export { PrefixScorer, MAX_SPECULATIVE_TTL_MS, type PrefixScorerOptions, type ScoreInput, type ScoreOutcome, type ScorePrompt, type PromptSpec, type PodScoreResult, type RoutingDecision, type DecisionOutcome, type TokenizationSource, type ScoreCallOptions, type ScoreTimings } from './prefix-scorer.js';
export { ScoringError, type ScoringErrorCode } from './errors.js';
export { ScoringMetrics, PREFIX_INDEXER_PLUGIN } from './metrics.js';
export { ReuseAnalytics, mergeReuseStates, reuseSnapshot, type ReuseSnapshot, type ReuseState, type Tally, type TallyView } from './analytics/reuse-analytics.js';
export { TopPrefixes, mergeTopPrefixes, reportPrefixes, type PrefixInfo, type SharedPrefix, type TopPrefixesState } from './analytics/top-prefixes.js';
export { SpaceSaving, mergeSpaceSaving, type HeavyHitter, type SpaceSavingState } from './analytics/space-saving.js';
export { AdaptiveSpeculativeTtl, DEFAULT_ADAPTIVE_TTL, type AdaptiveTtlOptions, type AdaptiveTtlSnapshot } from './speculation/adaptive-ttl.js';
