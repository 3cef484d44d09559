import { describe, expect, it } from 'vitest';
import { tracingSettingsFromEnv, TracingConfigError } from '../src/index.js';

describe('tracing settings from the standard OTEL_* variables', () => {
  it('are off unless an exporter or an OTLP endpoint is configured', () => {
    expect(tracingSettingsFromEnv({})).toBeNull();
    expect(tracingSettingsFromEnv({ OTEL_SERVICE_NAME: 'x' })).toBeNull();
    expect(tracingSettingsFromEnv({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' })).toBeNull();
    expect(tracingSettingsFromEnv({ OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' })).toBeNull();
  });

  it('turn on with an endpoint, exporting to its /v1/traces, parent-based always-on by default', () => {
    const s = tracingSettingsFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' })!;
    expect(s.exporter).toBe('otlp');
    expect(s.endpoint).toBe('http://collector:4318/v1/traces');
    expect(s.samplerName).toBe('parentbased_always_on');
    expect(tracingSettingsFromEnv({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/custom' })!.endpoint).toBe('http://c:4318/custom');
    expect(tracingSettingsFromEnv({ OTEL_TRACES_EXPORTER: 'console' })!.exporter).toBe('console');
  });

  it('read the sampler and batch settings', () => {
    const s = tracingSettingsFromEnv({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.1', OTEL_BSP_SCHEDULE_DELAY: '250', OTEL_BSP_MAX_QUEUE_SIZE: '4096' })!;
    expect(s.sampler.toString()).toMatch(/ParentBased/);
    expect(s.sampler.toString()).toMatch(/0\.1/);
    expect(s.batch).toEqual({ scheduledDelayMillis: 250, maxQueueSize: 4096 });
  });

  it('refuse what kvix cannot honour, naming the variable', () => {
    const bad = (env: NodeJS.ProcessEnv, variable: string): void => {
      expect(() => tracingSettingsFromEnv(env)).toThrow(TracingConfigError);
      expect(() => tracingSettingsFromEnv(env)).toThrow(variable);
    };
    bad({ OTEL_TRACES_EXPORTER: 'zipkin' }, 'OTEL_TRACES_EXPORTER');
    bad({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }, 'OTEL_EXPORTER_OTLP_PROTOCOL');
    bad({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_TRACES_SAMPLER: 'sometimes' }, 'OTEL_TRACES_SAMPLER');
    bad({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '2' }, 'OTEL_TRACES_SAMPLER_ARG');
    bad({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_BSP_SCHEDULE_DELAY: 'soon' }, 'OTEL_BSP_SCHEDULE_DELAY');
  });
});
