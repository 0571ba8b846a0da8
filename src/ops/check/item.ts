/**
 * One line of `walts check`: an item, whether it holds, what was found, and (when it does not hold)
 * the one thing to do about it. Items are plain data so the report can be printed for people, as
 * JSON, or as a monitoring-plugin line (cli/checkReport.ts) from the same list.
 */

/**
 * - ok: checked and holds;
 * - warn: works, but something deserves attention (does not fail the check);
 * - fail: wal-push, wal-fetch, backup-push or delete would fail (or lose data) because of it;
 * - skip: not checked, and why (PostgreSQL not reached and not required, a step an earlier failure prevents).
 */
export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface CheckItem {
  /** Short and stable: monitoring lines and JSON consumers name items by it (`store put`, `archive_mode`). */
  readonly name: string;
  readonly status: CheckStatus;
  /** What was found, one line. */
  readonly detail: string;
  /** For warn and fail: what to do, one line. */
  readonly fix?: string;
}

export const ok = (name: string, detail: string): CheckItem => ({ name, status: 'ok', detail });
export const warn = (name: string, detail: string, fix: string): CheckItem => ({ name, status: 'warn', detail, fix });
export const fail = (name: string, detail: string, fix: string): CheckItem => ({ name, status: 'fail', detail, fix });
export const skip = (name: string, detail: string): CheckItem => ({ name, status: 'skip', detail });

/** An error's one-line message without a repeated `walts:` or stack. */
export function message(err: unknown): string {
  if (err instanceof Error) return err.message.split('\n')[0] ?? err.message;
  return String(err);
}
