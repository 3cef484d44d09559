#!/usr/bin/env node
import { checkPortsFree, ConfigError, createLogger, exitOnStartupError, parseCommandLine, stopOnSignals } from '@kvix/service-kit';
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
// Signals are handled from before the start: a SIGTERM while starting waits for the start to
// finish, then stops cleanly, instead of killing the process mid-start.
const starting = KvEventsService.start(config, logger);
stopOnSignals({
  logger,
  stop: async () => {
    await (await starting.catch(() => null))?.stop();
    await tracing?.shutdown();
  },
  timeoutMs: config.shutdownTimeoutMs,
});
await starting.catch((err: unknown) => exitOnStartupError('kvix-kv-events', err, logger));
