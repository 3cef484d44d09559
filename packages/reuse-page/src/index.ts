export { analyticsView, type AnalyticsView, type Quantiles, type ReusePods, type ReuseSources } from './analytics-view.js';
export { ReuseHistory, DEFAULT_HISTORY, type HistoryOptions, type HistoryPoint, type ReuseTally } from './history.js';
export { registerReuseRoutes, analyticsDocument, historyDocument, snakeCase, type ReuseRoutesOptions } from './routes.js';
