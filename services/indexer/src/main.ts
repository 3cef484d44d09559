#!/usr/bin/env node
import { ingestionListener } from '@kvix/kv-ingest';
import { checkPortsFree, ConfigError, createLogger, exitOnStartupError, parseCommandLine, stopOnSignals } from '@kvix/service-kit';
import { startTracing, TracingConfigError, type Tracing } from '@kvix/telemetry-node';
import { Command } from 'commander';
import { addIndexerOptions, indexerListeners, resolveIndexerConfig } from './config.js';
import { Indexer } from './indexer.js';

const program = addIndexerOptions(
  new Command('kvix-indexer').description(
    'Per-pod precise prefix scores for LLM requests over gRPC (llm-d indexer.v1, kvix.indexer.v1) and HTTP, from the KV events of every vLLM pod.',
  ),
);
parseCommandLine(program);

let config;
try {
  config = resolveIndexerConfig(program);
} catch (err) {
  exitOnStartupError('kvix-indexer', err);
}
if ((program.opts() as { printConfig?: boolean }).printConfig) {
  process.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
  process.exit(0);
}
const central = config.kvEvents && config.replication.index !== 'follow' ? ingestionListener(config.ingest) : null;
await checkPortsFree([...indexerListeners(config), ...(central ? [central] : [])]).catch((err: unknown) => exitOnStartupError('kvix-indexer', err));
const logger = createLogger('indexer', config.logLevel);
// OpenTelemetry tracing when the standard OTEL_* variables ask for it (off otherwise).
let tracing: Tracing | null = null;
try {
  tracing = startTracing('kvix-indexer', logger);
} catch (err) {
  exitOnStartupError('kvix-indexer', err instanceof TracingConfigError ? new ConfigError(err.message) : err, logger);
}
// Signals are handled from before the start: a SIGTERM while starting (a probe can already answer)
// waits for the start to finish, then stops cleanly, instead of killing the process mid-start.
const starting = Indexer.start(config, logger);
stopOnSignals({
  logger,
  stop: async () => {
    await (await starting.catch(() => null))?.stop();
    await tracing?.shutdown();
  },
  timeoutMs: config.shutdownTimeoutMs,
});
await starting.catch((err: unknown) => exitOnStartupError('kvix-indexer', err, logger));
