export { EnvoySim, type EnvoySimEvents, type EnvoySimStats } from './envoy-sim.js';
export type { EnvoySimOptions, MetadataContext, RequestInfo } from './options.js';
export type { ExchangeReport, ExchangeOutcome, ProcessorRole, UpstreamAttempt } from './exchange-report.js';
export type { ProcessorAttempt } from './processor-stream.js';
export type { ProcessorFailure, ExtProcRetryOn } from './processor-failure.js';
export type { ProcessorHostStats } from './processor-pool.js';
export { EnvoySimError, type EnvoySimErrorCode } from './errors.js';
export { DESTINATION_HEADER, SERVED_KEY, LB_NAMESPACE } from './destination.js';
export type { JsonObject, JsonValue } from './json-struct.js';
