import type { Logger } from 'pino';
import { ConfigError } from './config.js';

export interface ShutdownOptions {
  logger: Logger;
  /** Stops the service: stop accepting work, finish or drop in-flight work, close sockets. */
  stop: () => Promise<void>;
  /** A stop taking longer than this exits anyway (Kubernetes sends SIGKILL after its grace period). */
  timeoutMs: number;
}

/**
 * SIGTERM / SIGINT stop the service once, then exit 0 (1 when stopping failed or timed out).
 * A second signal exits at once: an operator pressing Ctrl-C twice means it.
 */
export function stopOnSignals(options: ShutdownOptions): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    const { logger } = options;
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting without finishing shutdown');
      process.exit(130);
    }
    stopping = true;
    logger.info({ signal, timeoutMs: options.timeoutMs }, 'shutting down');
    const timer = setTimeout(() => {
      logger.error({ timeoutMs: options.timeoutMs }, 'shutdown timed out; exiting');
      process.exit(1);
    }, options.timeoutMs);
    timer.unref();
    options.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err: (err as Error).message }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

/**
 * Ends a process that could not start: a configuration mistake is one line on stderr and exit
 * code 2 (like a bad flag); anything else is logged and exits 1.
 */
export function exitOnStartupError(service: string, err: unknown, logger?: Logger): never {
  if (err instanceof ConfigError) {
    process.stderr.write(`${service}: ${err.message}\n`);
    process.exit(2);
  }
  const message = err instanceof Error ? err.message : String(err);
  if (logger) logger.fatal({ err: message }, 'cannot start');
  else process.stderr.write(`${service}: cannot start: ${message}\n`);
  process.exit(1);
}
