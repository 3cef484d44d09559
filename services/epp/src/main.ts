#!/usr/bin/env node
import { createLogger, exitOnStartupError, stopOnSignals } from '@kvix/service-kit';
import { Command } from 'commander';
import { addEppOptions, resolveEppConfig } from './config.js';
import { Epp } from './epp.js';

const program = addEppOptions(
  new Command('kvix-epp').description(
    'The endpoint picker: an Envoy External Processor and an OpenAI-compatible HTTP gateway that send each LLM request to the vLLM pod holding its prefix, balanced against load.',
  ),
);
program.parse(process.argv);

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
const logger = createLogger('epp', config.logLevel);
const epp = await Epp.start(config, logger).catch((err: unknown) => exitOnStartupError('kvix-epp', err, logger));
stopOnSignals({ logger, stop: () => epp.stop(), timeoutMs: config.shutdownTimeoutMs });
