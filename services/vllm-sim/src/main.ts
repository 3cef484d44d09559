#!/usr/bin/env node
import { Command } from 'commander';
import { pino } from 'pino';
import { addSimOptions, explicitFlags, resolveSimConfig, SimConfigError } from './config.js';
import { SimPod } from './pod.js';

/** One simulated vLLM pod per process: what a deployment runs (see `kvix sim` for several). */
const program = addSimOptions(new Command('vllm-sim').description('A GPU-free vLLM pod: OpenAI API, prefix caching, KV events over ZeroMQ, vLLM metrics.'));
program.parse(process.argv);

let config;
try {
  config = resolveSimConfig(explicitFlags(program));
} catch (err) {
  if (err instanceof SimConfigError) {
    process.stderr.write(`vllm-sim: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}
const logger = pino({ level: config.logLevel, base: { service: 'vllm-sim' } });
const pod = await SimPod.start(config, logger).catch((err: unknown) => {
  logger.fatal({ err: (err as Error).message }, 'cannot start');
  process.exit(1);
});

let stopping = false;
const shutdown = (signal: string): void => {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'shutting down');
  void pod.stop().then(() => process.exit(0));
};
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));
