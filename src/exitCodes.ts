/**
 * The one place where failures become exit codes (DESIGN.md §4). PostgreSQL reads them:
 * - archive_command: any non-zero keeps the file and retries; codes stay in 1..125 because higher
 *   ones (and signals) make the archiver process die instead of counting a failure;
 * - restore_command: 1 means "not in the archive" and may end recovery; a hard error must exit
 *   above 125 (255 by default) so that PostgreSQL stops instead of promoting without the WAL.
 */
import { ChecksFailedError, ConfigError, WaltsError } from './errors';

export const EXIT = {
  ok: 0,
  notFound: 1,
  failure: 1,
  usage: 2,
  integrity: 3,
  unavailable: 4,
  fetchHardError: 255,
} as const;

export function exitCodeFor(command: string, err: unknown, fetchErrorExitCode: number = EXIT.fetchHardError): number {
  const kind = err instanceof WaltsError ? err.kind : 'internal';
  // check's report decides its code (3, or the Nagios plugin codes with --nagios): see cli/check.ts.
  if (err instanceof ChecksFailedError) return err.exitCode;
  if (command === 'wal-fetch') {
    if (kind === 'not-found') return EXIT.notFound;
    // A bad argument is a person at a terminal (PostgreSQL never sends one); a bad setting is not.
    if (kind === 'usage' && !(err instanceof ConfigError)) return EXIT.usage;
    return fetchErrorExitCode;
  }
  switch (kind) {
    case 'usage':
      return EXIT.usage;
    case 'integrity':
    case 'crypto':
      return EXIT.integrity;
    case 'unavailable':
      return EXIT.unavailable;
    case 'not-found':
      return EXIT.notFound;
    case 'failed': // restore-test: the drill ran and a check failed
      return EXIT.failure;
    default:
      return EXIT.failure;
  }
}
