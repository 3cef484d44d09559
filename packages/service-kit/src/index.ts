export { ConfigError, resolveConfig, readConfigFile, envLayer, flagLayer, explicitFlags, integerArg, numberArg, collectArg, setPath, type Binding, type ConfigLayers } from './config.js';
export { registerOpsRoutes, type Readiness, type OpsRoutesOptions } from './ops-routes.js';
export { stopOnSignals, exitOnStartupError, type ShutdownOptions } from './lifecycle.js';
export { createLogger, LOG_LEVELS, type LogLevel } from './logger.js';
