#!/usr/bin/env node
import { ingestionListener } from '@kvix/kv-ingest';
import { checkPortsFree, ConfigError, createLogger, exitOnStartupError, parseCommandLine, runUntilSignalled } from '@kvix/service-kit';
import { startTracing, TracingConfigError, type Tracing } from '@kvix/telemetry-node';
import { Command } from 'commander';
import { addEppOptions, eppListeners, resolveEppConfig } from './config.js';
import { Epp } from './epp.js';

const program = addEppOptions(
  new Command('kvix-epp').description(
    'The endpoint picker: an Envoy External Processor and an OpenAI-compatible HTTP gateway that send each LLM request to the vLLM pod holding its prefix, balanced against load.',
  ),
);
parseCommandLine(program);

let config;
try {
  config = resolveEppConfig(program);
} catch (err) {
  exitOnStartupError('kvix-epp', err);
}
if ((program.opts() as { printConfig?: boolean }).printConfig) {
  process.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
  process.exit(0);
}
const central = config.embeddedIndex && config.kvEvents && config.replication.index !== 'follow' ? ingestionListener(config.ingest) : null;
await checkPortsFree([...eppListeners(config), ...(central ? [central] : [])]).catch((err: unknown) => exitOnStartupError('kvix-epp', err));
const logger = createLogger('epp', config.logLevel);
// OpenTelemetry tracing when the standard OTEL_* variables ask for it (off otherwise).
let tracing: Tracing | null = null;
try {
  tracing = startTracing('kvix-epp', logger);
} catch (err) {
  exitOnStartupError('kvix-epp', err instanceof TracingConfigError ? new ConfigError(err.message) : err, logger);
}
await runUntilSignalled('kvix-epp', logger, Epp.start(config, logger), { timeoutMs: config.shutdownTimeoutMs, afterStop: async () => tracing?.shutdown() });
