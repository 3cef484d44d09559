#!/usr/bin/env node
import { createLogger, exitOnStartupError, stopOnSignals } from '@kvix/service-kit';
import { Command } from 'commander';
import { addServiceOptions, resolveServiceConfig } from './config.js';
import { PredictorService } from './service.js';

const program = addServiceOptions(
  new Command('kvix-latency-predictor').description(
    "Serves llm-d's latency predictor API (POST /predict, /predict/bulk, /predict/bulk/strict, /add_training_data_bulk; GET /status, /metrics) from kvix's built-in online model: TTFT and TPOT predictions for routing, learned from every completed request.",
  ),
);
program.parse(process.argv);

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
const logger = createLogger('latency-predictor', config.logLevel);
const service = await PredictorService.start(config, logger).catch((err: unknown) => exitOnStartupError('kvix-latency-predictor', err, logger));
stopOnSignals({ logger, stop: () => service.stop(), timeoutMs: config.shutdownTimeoutMs });
