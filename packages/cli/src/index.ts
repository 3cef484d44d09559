export { computeKeys } from './commands/keys.js';
export { computeEngineHashes } from './commands/engine-hash.js';
export { decodeToJson, payloadFromText } from './commands/decode.js';
export { UsageError } from './io.js';
