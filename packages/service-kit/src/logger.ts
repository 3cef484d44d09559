import { pino, type Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** JSON lines on stdout, one `service` field on every line (what log pipelines index by). */
export function createLogger(service: string, level: LogLevel): Logger {
  return pino({ level, base: { service } });
}
