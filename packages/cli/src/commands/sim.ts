import { Command } from 'commander';
import { UsageError } from '../io.js';

interface FleetFlags {
  pods: string;
  basePort: string;
  baseEventPort: string;
  baseReplayPort?: string;
  writeEndpoints?: string;
}

function portNumber(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new UsageError(`sim: --${name} must be a port number, got ${value}`);
  return n;
}

/**
 * The simulator (fastify, ZeroMQ, tokenizers) loads only when `kvix sim` runs, so the debugging
 * commands start fast: registering its options needs it, hence an async registration.
 */
export async function registerSim(program: Command): Promise<void> {
  const { addSimOptions, explicitFlags, resolveSimConfig, SimConfigError, SimFleet } = await import('@kvix/vllm-sim');
  const { pino } = await import('pino');
  const sim = addSimOptions(
    new Command('sim')
      .summary('run simulated vLLM pods (GPU-free) for local use')
      .description(
        [
          'Starts --pods simulated vLLM pods in this process. Pod i (rank r) serves HTTP on',
          '--base-port + i*dp + r and publishes KV events on --base-event-port + i*dp + r (replay on',
          '--base-replay-port + i*dp + r). For deployment, run one pod per process (services/vllm-sim).',
        ].join('\n'),
      ),
  )
    .option('--pods <n>', 'simulated pods to start', '1')
    .option('--base-port <port>', 'HTTP port of the first pod', '8000')
    .option('--base-event-port <port>', 'KV-event port of the first pod', '5557')
    .option('--base-replay-port <port>', 'replay port of the first pod (default: base event port + 100)')
    .option('--write-endpoints <file>', 'write an endpoints file (for kvix discovery) listing the pods');
  sim.action(async () => {
    const flags = sim.opts<FleetFlags>();
    const pods = Number(flags.pods);
    if (!Number.isInteger(pods) || pods < 1 || pods > 256) throw new UsageError(`sim: --pods must be an integer in [1, 256], got ${flags.pods}`);
    const baseEventPort = portNumber('base-event-port', flags.baseEventPort);
    let config;
    try {
      config = resolveSimConfig(explicitFlags(sim));
    } catch (err) {
      if (err instanceof SimConfigError) throw new UsageError(`sim: ${err.message}`);
      throw err;
    }
    const fleetOptions = {
      pods,
      basePort: portNumber('base-port', flags.basePort),
      baseEventPort,
      baseReplayPort: flags.baseReplayPort === undefined ? baseEventPort + 100 : portNumber('base-replay-port', flags.baseReplayPort),
      ...(flags.writeEndpoints ? { writeEndpoints: flags.writeEndpoints } : {}),
    };
    // Every port first: a taken one is one line (exit 2), not a stack trace from the pod that hit it.
    const { checkPortsFree, usageMessage } = await import('@kvix/service-kit');
    await checkPortsFree(SimFleet.listeners(config, fleetOptions)).catch((err: unknown) => {
      const usage = usageMessage(err);
      throw usage === null ? err : new UsageError(`sim: ${usage}`);
    });
    const logger = pino({ level: config.logLevel, base: { service: 'vllm-sim' } });
    const fleet = await SimFleet.start(config, fleetOptions, logger).catch((err: unknown) => {
      const usage = usageMessage(err);
      throw usage === null ? err : new UsageError(`sim: ${usage}`);
    });
    let stopping = false;
    await new Promise<void>((resolve) => {
      const stop = (signal: string): void => {
        if (stopping) return;
        stopping = true;
        logger.info({ signal }, 'stopping simulated pods');
        void fleet.stop().then(resolve);
      };
      process.on('SIGINT', () => stop('SIGINT'));
      process.on('SIGTERM', () => stop('SIGTERM'));
    });
  });
  program.addCommand(sim);
}
