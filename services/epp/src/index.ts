export { Epp } from './epp.js';
export { EppConfigSchema, resolveEppConfig, workerCount, addEppOptions, DEFAULT_GATEWAY_PORT, DEFAULT_EXT_PROC_PORT, DEFAULT_METRICS_PORT, type EppConfig, type EppConfigInput } from './config.js';
export { Gateway, ENDPOINT_HEADER, WORKER_HEADER, type GatewayOptions } from './gateway/gateway.js';
