export { EnvoySim, type EnvoySimEvents } from './envoy-sim.js';
export type { EnvoySimOptions, MetadataContext, RequestInfo } from './options.js';
export type { ExchangeReport, ExchangeOutcome, ProcessorRole, UpstreamAttempt } from './exchange-report.js';
export { EnvoySimError, type EnvoySimErrorCode } from './errors.js';
export { DESTINATION_HEADER, FALLBACK_KEY, SERVED_KEY, LB_NAMESPACE } from './destination.js';
export type { JsonObject, JsonValue } from './json-struct.js';
