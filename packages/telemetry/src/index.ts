export { tracer, withSpan, withSpanSync, spanIfTracing, traceHeaders, contextFromHeaders, startSpan, recordError, Sampled, type SpanAttributes } from './spans.js';
export { RequestTrace, type RequestFront } from './request-trace.js';
export { FastHistogram } from './fast-histogram.js';
