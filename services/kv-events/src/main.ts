#!/usr/bin/env node
import { checkPortsFree, ConfigError, createLogger, exitOnStartupError, parseCommandLine, runUntilSignalled } from '@kvix/service-kit';
import { startTracing, TracingConfigError, type Tracing } from '@kvix/telemetry-node';
import { Command } from 'commander';
import { addServiceOptions, resolveServiceConfig, serviceListeners } from './config.js';
import { KvEventsService } from './service.js';

const program = addServiceOptions(
  new Command('kvix-kv-events').description(
    'Subscribes to the KV-event streams of vLLM pods (ZeroMQ) and keeps their block index: in order, gaps replayed, pods added and removed as the endpoints file changes.',
  ),
);
parseCommandLine(program);

let config;
try {
  config = resolveServiceConfig(program);
} catch (err) {
  exitOnStartupError('kvix-kv-events', err);
}
if ((program.opts() as { printConfig?: boolean }).printConfig) {
  process.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
  process.exit(0);
}
await checkPortsFree(serviceListeners(config)).catch((err: unknown) => exitOnStartupError('kvix-kv-events', err));
const logger = createLogger('kv-events', config.logLevel);
// OpenTelemetry tracing when the standard OTEL_* variables ask for it (off otherwise).
let tracing: Tracing | null = null;
try {
  tracing = startTracing('kvix-kv-events', logger);
} catch (err) {
  exitOnStartupError('kvix-kv-events', err instanceof TracingConfigError ? new ConfigError(err.message) : err, logger);
}
await runUntilSignalled('kvix-kv-events', logger, KvEventsService.start(config, logger), { timeoutMs: config.shutdownTimeoutMs, afterStop: async () => tracing?.shutdown() });
