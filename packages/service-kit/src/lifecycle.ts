import type { Logger } from 'pino';
import { ConfigError } from './config.js';
import { PortConflictError, PortInUseError } from './ports.js';

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
 * Ends a process that could not start: a configuration mistake or a taken port is one line on
 * stderr and exit code 2 (like a bad flag); anything else is logged and exits 1.
 */
export function exitOnStartupError(service: string, err: unknown, logger?: Logger): never {
  const usage = usageMessage(err);
  if (usage !== null) {
    process.stderr.write(`${service}: ${usage}\n`);
    process.exit(2);
  }
  const message = err instanceof Error ? err.message : String(err);
  if (logger) logger.fatal({ err: message }, 'cannot start');
  else process.stderr.write(`${service}: cannot start: ${message}\n`);
  process.exit(1);
}

/** The one line for a start-up failure the user fixes by changing the command line, else null. */
export function usageMessage(err: unknown): string | null {
  if (err instanceof ConfigError || err instanceof PortInUseError || err instanceof PortConflictError) return err.message.replace(/\s*\n\s*/g, ' ');
  // Any library's configuration error (an unreadable TLS file, a bad tokenizer setting) is one too.
  if (err instanceof Error && (err as { code?: unknown }).code === 'INVALID_CONFIG') return err.message.replace(/\s*\n\s*/g, ' ');
  // A port taken between the check and the bind (or bound by a library that checks nothing),
  // possibly wrapped by the code that tried to listen.
  for (let e = err as (NodeJS.ErrnoException & { address?: string; port?: number }) | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (e.code === 'EADDRINUSE') return `address in use${e.address !== undefined ? `: ${e.address}:${e.port ?? ''}` : ''} (${(err as Error).message})`;
  }
  return null;
}
