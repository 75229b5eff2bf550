import pino from 'pino';
import type { Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * One JSON object per line on stdout, ISO timestamps. Request headers are never logged:
 * they can carry Proxy-Authorization.
 */
export function createLogger(level: string = process.env.TOLLGATE_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime });
}
