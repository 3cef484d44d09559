export { analyticsView, speculationTally, type AnalyticsView, type Bucket, type Quantiles, type ReusePods, type ReuseSources, type ReuseTallies, type RoutingTallies, type SpeculationTally } from './analytics-view.js';
export { ReuseHistory, DEFAULT_HISTORY, type HistoryOptions, type HistoryPoint, type ReuseTally } from './history.js';
export { registerReuseRoutes, analyticsDocument, historyDocument, snakeCase, type ReuseRoutesOptions } from './routes.js';
