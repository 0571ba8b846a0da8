/**
 * --switch-wal: the end-to-end proof that archiving works with this store. PostgreSQL is made to
 * write a record (a restore point named `walts check`) and switch to a new WAL file; the file just
 * completed must then appear, complete, in this store within the timeout. It can only arrive
 * through the server's own archive_command, so this proves what check cannot see directly: the
 * server's environment points walts at this store.
 *
 * Waiting goes through the command's retry clock (deps.retry.clock: `now` and `sleep`), so tests
 * drive the timeout with a fake clock instead of asserting on wall-clock time.
 */
import { findWalVariants } from '../../archive/walObjects';
import { describeArchiverStatus, walArchiverStatus } from '../../postgres/backupApi';
import type { PgSession } from '../../postgres/client';
import { parseWalFileName } from '../../postgres/walName';
import type { Storage } from '../../storage/storage';
import type { RetryClock } from '../../util/retryBudget';
import { fail, message, ok, skip, type CheckItem } from './item';
import type { PgFacts } from './postgres';

export interface SwitchWalOptions {
  readonly timeoutMs: number;
  readonly clock: Pick<RetryClock, 'now' | 'sleep'>;
  readonly signal?: AbortSignal;
}

const NAME = 'switch-wal';
const FIRST_POLL_MS = 100;
const MAX_POLL_MS = 2000;

export async function switchWalAndWait(facts: Pick<PgFacts, 'session' | 'archiveMode' | 'inRecovery'>, storage: Storage, options: SwitchWalOptions): Promise<CheckItem> {
  if (facts.archiveMode === 'off') return skip(NAME, 'archive_mode is off: nothing would be archived');
  if (facts.inRecovery) return skip(NAME, 'a standby cannot switch WAL files: run check --switch-wal on the primary');
  let walFile: string;
  try {
    walFile = await switchWal(facts.session);
  } catch (err) {
    const denied = (err as { sqlState?: string }).sqlState === '42501';
    return fail(NAME, `could not switch WAL files: ${message(err)}`, denied ? `connect as a superuser, or GRANT EXECUTE ON FUNCTION pg_switch_wal() and pg_create_restore_point(text) TO ${facts.session.target.user}` : 'see the message');
  }
  const name = parseWalFileName(walFile);
  if (!name) return fail(NAME, `the server named the switched WAL file ${JSON.stringify(walFile)}, not a WAL file name`, 'report this as a walts bug');
  const { clock, timeoutMs, signal } = options;
  const started = clock.now();
  for (let wait = FIRST_POLL_MS; ; wait = Math.min(MAX_POLL_MS, wait * 2)) {
    try {
      const variants = await findWalVariants(storage, name, signal);
      if (variants.some((v) => v.facts)) return ok(NAME, `${walFile} reached the store ${((clock.now() - started) / 1000).toFixed(1)} s after pg_switch_wal()`);
    } catch (err) {
      return fail(NAME, `could not look for ${walFile} in the store: ${message(err)}`, 'fix the store items above first');
    }
    const left = started + timeoutMs - clock.now();
    if (left <= 0) break;
    await clock.sleep(Math.min(wait, left), signal);
  }
  const status = await walArchiverStatus(facts.session).then(describeArchiverStatus, () => 'pg_stat_archiver not readable');
  return fail(
    NAME,
    `${walFile} did not reach the store within ${Math.round(timeoutMs / 1000)} s of pg_switch_wal() (${status})`,
    "the server's archive_command must run walts wal-push %p with this WALTS_STORE in the server's environment: see the PostgreSQL log; a slow store needs a longer --timeout",
  );
}

/** A restore point makes sure the current WAL file holds something, so pg_switch_wal() really switches. */
async function switchWal(session: PgSession): Promise<string> {
  await session.query(`select pg_create_restore_point('walts check')`);
  const r = await session.query<{ name: string }>('select pg_walfile_name(pg_switch_wal()) as name');
  return r.rows[0]!.name;
}
