/**
 * Reading the drill server's log (PostgreSQL's own lines, plus the stderr of every restore_command
 * it ran: walts wal-fetch's JSON lines). Pure: the caller reads the file. The server runs with
 * lc_messages = C, so its messages are the English ones matched here.
 */
import type { ErrorKind } from '../../errors';

export interface LogFacts {
  /** `consistent recovery state reached at 0/2000100` */
  readonly consistentAt?: string;
  /** `recovery stopping before commit of transaction 751, time 2026-...`: a target was reached. */
  readonly targetStop?: string;
  /** The first FATAL or PANIC message. */
  readonly fatal?: string;
  /** The first error walts wal-fetch logged (its message and kind), e.g. a digest mismatch. */
  readonly walFetchError?: { readonly message: string; readonly kind: ErrorKind | 'unknown' };
}

export function readLogFacts(text: string): LogFacts {
  let consistentAt: string | undefined;
  let targetStop: string | undefined;
  let fatal: string | undefined;
  let walFetchError: LogFacts['walFetchError'];
  for (const line of text.split('\n')) {
    if (line.startsWith('{')) {
      walFetchError ??= walFetchFailure(line);
      continue;
    }
    consistentAt ??= /consistent recovery state reached at ([0-9A-F]+\/[0-9A-F]+)/.exec(line)?.[1];
    targetStop ??= /(recovery stopping (?:before|after) .*)$/.exec(line)?.[1];
    fatal ??= /\b(?:FATAL|PANIC):\s+(.*)$/.exec(line)?.[1];
  }
  return { consistentAt, targetStop, fatal, walFetchError };
}

function walFetchFailure(line: string): LogFacts['walFetchError'] {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (v.cmd !== 'wal-fetch' || (v.level !== 'error' && v.level !== 'fatal') || typeof v.msg !== 'string') return undefined;
  const kinds = ['usage', 'not-found', 'integrity', 'unavailable', 'crypto', 'failed', 'internal'];
  const kind = typeof v.error_kind === 'string' && kinds.includes(v.error_kind) ? (v.error_kind as ErrorKind) : 'unknown';
  return { message: v.msg, kind };
}

/** The last `n` lines, for an operator reading why the server stopped. */
export function logTail(text: string, n = 20): string[] {
  return text.trimEnd().split('\n').slice(-n);
}
