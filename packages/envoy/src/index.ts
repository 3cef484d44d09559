export { ENVOY_INSTALL_HINT, ENVOY_VERSION, VENV_DIR, envoyVersion, findEnvoy, repoRoot, venvEnvoy, type EnvoyBinary, type EnvoySource, type FindEnvoyOptions } from './binary.js';
export { deployConfigPath, insertHttpFilter, localEnvoyConfig, readEnvoyConfig, splitHostPort, type EnvoyConfig, type LocalEnvoyOptions } from './config.js';
export { EnvoyError, type EnvoyErrorCode } from './errors.js';
export { EnvoyProcess, validateEnvoyConfig, type EnvoyLogLevel, type HostStatus, type StartEnvoyOptions, type ValidationResult } from './process.js';
