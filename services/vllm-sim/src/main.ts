#!/usr/bin/env node
import { checkPortsFree, exitOnStartupError, parseCommandLine, stopOnSignals } from '@kvix/service-kit';
import { Command } from 'commander';
import { pino } from 'pino';
import { addSimOptions, explicitFlags, resolveSimConfig, SimConfigError } from './config.js';
import { podListeners } from './listeners.js';
import { SimPod } from './pod.js';

/** One simulated vLLM pod per process: what a deployment runs (see `kvix sim` for several). */
const program = addSimOptions(new Command('vllm-sim').description('A GPU-free vLLM pod: OpenAI API, prefix caching, KV events over ZeroMQ, vLLM metrics.'));
parseCommandLine(program);

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
await checkPortsFree(podListeners(config)).catch((err: unknown) => exitOnStartupError('vllm-sim', err));
const logger = pino({ level: config.logLevel, base: { service: 'vllm-sim' } });
// Signals are handled from before the start: a SIGTERM while starting waits for it, then stops cleanly.
const starting = SimPod.start(config, logger);
stopOnSignals({ logger, stop: async () => (await starting.catch(() => null))?.stop(), timeoutMs: 10_000 });
await starting.catch((err: unknown) => exitOnStartupError('vllm-sim', err, logger));
