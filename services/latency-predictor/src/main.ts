#!/usr/bin/env node
import { checkPortsFree, createLogger, exitOnStartupError, parseCommandLine, stopOnSignals } from '@kvix/service-kit';
import { Command } from 'commander';
import { addServiceOptions, resolveServiceConfig, serviceListeners } from './config.js';
import { PredictorService } from './service.js';

const program = addServiceOptions(
  new Command('kvix-latency-predictor').description(
    "Serves llm-d's latency predictor API (POST /predict, /predict/bulk, /predict/bulk/strict, /add_training_data_bulk; GET /status, /metrics) from kvix's built-in online model: TTFT and TPOT predictions for routing, learned from every completed request.",
  ),
);
parseCommandLine(program);

let config;
try {
  config = resolveServiceConfig(program);
} catch (err) {
  exitOnStartupError('kvix-latency-predictor', err);
}
if ((program.opts() as { printConfig?: boolean }).printConfig) {
  process.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
  process.exit(0);
}
await checkPortsFree(serviceListeners(config)).catch((err: unknown) => exitOnStartupError('kvix-latency-predictor', err));
const logger = createLogger('latency-predictor', config.logLevel);
// Signals are handled from before the start: a SIGTERM while starting waits for it, then stops cleanly.
const starting = PredictorService.start(config, logger);
stopOnSignals({ logger, stop: async () => (await starting.catch(() => null))?.stop(), timeoutMs: config.shutdownTimeoutMs });
await starting.catch((err: unknown) => exitOnStartupError('kvix-latency-predictor', err, logger));
