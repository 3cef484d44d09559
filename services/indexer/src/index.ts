export { Indexer } from './indexer.js';
export { IndexerConfigSchema, resolveIndexerConfig, addIndexerOptions, DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT, type IndexerConfig, type IndexerConfigInput } from './config.js';
export { classify, ApiError, type ClassifiedError } from './errors.js';
