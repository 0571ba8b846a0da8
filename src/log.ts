import pino, { type Logger } from 'pino';

/**
 * JSON logs on stderr (stdout carries command output), written synchronously so the last line is
 * out before the process exits. PostgreSQL captures archive_command's stderr into its own log.
 */
export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid, ...bindings },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // Defence in depth: nothing secret is logged on purpose, and these paths never leave the process.
      redact: { paths: ['passphrase', '*.passphrase', 'credentials', '*.credentials', 'secretAccessKey', '*.secretAccessKey'], censor: '[redacted]' },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}

export type { Logger };
