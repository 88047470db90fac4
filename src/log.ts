import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON logs to stdout (pino). Credentials are redacted wherever they might appear. */
export function createLogger(level: string, dest?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { svc: 'sipd' },
      redact: { paths: ['password', 'ha1', 'ha1b', 'authorization', '*.password', '*.ha1', '*.authorization'], censor: '[redacted]' },
    },
    dest as pino.DestinationStream | undefined,
  );
}
