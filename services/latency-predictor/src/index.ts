export { PredictorService } from './service.js';
export { PredictorServiceConfigSchema, resolveServiceConfig, addServiceOptions, ENV_BINDINGS, DEFAULT_PORT, type PredictorServiceConfig, type PredictorServiceConfigInput } from './config.js';
