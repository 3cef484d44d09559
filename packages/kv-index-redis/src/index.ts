export { RedisIndex, type RedisIndexConfig, type BackendHealthObserver, type BackendOperation, type RedisIndexLogger } from './redis-index.js';
export { parseRedisUrl, type RedisTarget } from './redis-url.js';
export { fieldOf, decodeField, goJsonString, requestKeyName, engineKeyName, type DecodedField } from './llmd-schema.js';
export { BUCKET_MS } from './scripts.js';
