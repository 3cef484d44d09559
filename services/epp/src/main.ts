#!/usr/bin/env node
import cluster from 'node:cluster';
import { ingestionListener } from '@kvix/kv-ingest';
import { checkPortsFree, ConfigError, createLogger, exitOnStartupError, parseCommandLine, runUntilSignalled, stopOnSignals } from '@kvix/service-kit';
import { startTracing, TracingConfigError, type Tracing } from '@kvix/telemetry-node';
import { Command } from 'commander';
import type { Logger } from 'pino';
import { EppPrimary } from './cluster/primary.js';
import { PrimaryLink } from './cluster/worker-link.js';
import { addEppOptions, eppListeners, resolveEppConfig, workerCount, type EppConfig } from './config.js';
import { Epp } from './epp.js';

const program = addEppOptions(
  new Command('kvix-epp').description(
    'The endpoint picker: an Envoy External Processor and an OpenAI-compatible HTTP gateway that send each LLM request to the vLLM pod holding its prefix, balanced against load.',
  ),
);
parseCommandLine(program);

function resolve(): { config: EppConfig; workers: number } {
  try {
    const config = resolveEppConfig(program);
    return { config, workers: workerCount(config) };
  } catch (err) {
    return exitOnStartupError('kvix-epp', err);
  }
}
const { config, workers } = resolve();
if ((program.opts() as { printConfig?: boolean }).printConfig) {
  process.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
  process.exit(0);
}
if (cluster.isWorker) await runWorker();
else if (workers > 1) await runPrimary(workers);
else await runSingle();

/** OpenTelemetry tracing when the standard OTEL_* variables ask for it (off otherwise). */
function tracingFor(logger: Logger): Tracing | null {
  try {
    return startTracing('kvix-epp', logger);
  } catch (err) {
    return exitOnStartupError('kvix-epp', err instanceof TracingConfigError ? new ConfigError(err.message) : err, logger);
  }
}

/** One process doing everything (the default). */
async function runSingle(): Promise<void> {
  const central = config.embeddedIndex && config.kvEvents && config.replication.index !== 'follow' ? ingestionListener(config.ingest) : null;
  await checkPortsFree([...eppListeners(config), ...(central ? [central] : [])]).catch((err: unknown) => exitOnStartupError('kvix-epp', err));
  const logger = createLogger('epp', config.logLevel);
  const tracing = tracingFor(logger);
  await runUntilSignalled('kvix-epp', logger, Epp.start(config, logger), { timeoutMs: config.shutdownTimeoutMs, afterStop: async () => tracing?.shutdown() });
}

/** `--routing-workers N`: ingestion and the index here, routing in N forked workers sharing the ports. */
async function runPrimary(n: number): Promise<void> {
  const central = config.embeddedIndex && config.kvEvents ? ingestionListener(config.ingest) : null;
  await checkPortsFree([...eppListeners(config), ...(central ? [central] : [])]).catch((err: unknown) => exitOnStartupError('kvix-epp', err));
  const logger = createLogger('epp', config.logLevel).child({ role: 'primary' });
  await runUntilSignalled('kvix-epp', logger, EppPrimary.start(config, n, logger), { timeoutMs: config.shutdownTimeoutMs });
}

/** One of the primary's workers: the same configuration, its index followed over the cluster channel. */
async function runWorker(): Promise<void> {
  const id = String(cluster.worker!.id);
  const logger = createLogger('epp', config.logLevel).child({ worker: id });
  const tracing = tracingFor(logger);
  const link = new PrimaryLink(id, logger);
  const epp = await Epp.start(config, logger, { worker: link }).catch((err: unknown) => exitOnStartupError('kvix-epp', err, logger));
  const stop = async (): Promise<void> => {
    await epp.stop();
    link.close();
    await tracing?.shutdown();
  };
  stopOnSignals({ logger, stop, timeoutMs: config.shutdownTimeoutMs });
  // The primary is gone (killed): nothing feeds this worker's index any more.
  process.once('disconnect', () => {
    logger.warn('lost the primary; stopping');
    void stop().finally(() => process.exit(1));
  });
}
