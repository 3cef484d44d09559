export { ConfigError, resolveConfig, readConfigFile, envLayer, flagLayer, explicitFlags, integerArg, numberArg, collectArg, setPath, type Binding, type ConfigLayers } from './config.js';
export { registerOpsRoutes, type Readiness, type OpsRoutesOptions } from './ops-routes.js';
export { stopOnSignals, exitOnStartupError, usageMessage, type ShutdownOptions } from './lifecycle.js';
export { checkPortsFree, describePortHolder, PortInUseError, PortConflictError, type ListenerSpec } from './ports.js';
export { applyCommandLineConvention, parseCommandLine, addDeprecatedAlias, commanderExitCode, EXIT_USAGE } from './command-line.js';
export { registerErrorHandlers, classifyHttpError, sendError, errorBody, HTTP_STATUS_OF_CODE, type ApiErrorBody, type HttpErrorClass, type ErrorHandlerOptions } from './http-errors.js';
export { createLogger, LOG_LEVELS, type LogLevel } from './logger.js';
export {
  httpListenerFields,
  TlsServerSchema,
  TlsClientSchema,
  tlsServerOptions,
  tlsClientOptions,
  readTokenFile,
  fastifyListenerOptions,
  nodeServerOptions,
  limitConnections,
  requireBearerToken,
  secureFastifyListener,
  UNAUTHENTICATED_ROUTES,
  type HttpLimits,
  type HttpListenerSettings,
  type TlsServerSettings,
  type TlsClientSettings,
} from './http-listener.js';
