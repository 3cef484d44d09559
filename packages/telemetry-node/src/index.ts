export { startTracing, tracingSettingsFromEnv, TracingConfigError, type Tracing, type TracingSettings, type TracingLogger } from './start-tracing.js';
