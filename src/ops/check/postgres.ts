/**
 * The PostgreSQL items, through a libpq-style session (postgres/client.ts): version, wal_level,
 * archive_mode, archive_command, archive_timeout and the archiver's own record of failures; the
 * system identifier for the cluster item. Checked when the server is reachable (or required with
 * --pg); a server not reached and not required is one skipped item, not a failure, so check also
 * runs on restore hosts.
 */
import { MIN_SERVER_VERSION_NUM, walArchiverStatus } from '../../postgres/backupApi';
import { ConfigError } from '../../errors';
import type { PgSession } from '../../postgres/client';
import { archiveCommandItem, type ArchiveCommandContext } from './archiveCommandItem';
import { fail, message, ok, skip, warn, type CheckItem } from './item';

export type PgMode = 'auto' | 'require' | 'off';

export interface PgFacts {
  readonly session: PgSession;
  readonly systemIdentifier: string;
  readonly archiveMode: string;
  readonly walLevel: string;
  readonly inRecovery: boolean;
}

/** archive_timeout above this (seconds) leaves that much of the newest writes on this server only. */
export const LARGE_ARCHIVE_TIMEOUT_S = 3600;

export interface PostgresCheckContext extends ArchiveCommandContext {
  /**
   * The replication slots whose `walts wal-receive` feeds this store for the cluster `systemId`
   * (receivedPartials.ts feedingSlots); undefined when the store cannot be asked.
   */
  readonly feedingSlots?: (systemId: string) => Promise<Set<string>>;
}

export async function checkPostgres(mode: PgMode, connect: () => Promise<PgSession>, ctx: PostgresCheckContext): Promise<{ items: CheckItem[]; facts?: PgFacts }> {
  if (mode === 'off') return { items: [skip('postgres', 'not checked (--no-pg)')] };
  let session: PgSession;
  try {
    session = await connect();
  } catch (err) {
    // A server that answered but refused the role, password or database (or PG* settings that are
    // wrong) is a problem to fix even when not required; only "no server there" is skipped.
    if (err instanceof ConfigError) return { items: [fail('postgres', message(err), 'fix PGUSER, PGPASSWORD or ~/.pgpass, PGDATABASE (or --username, --dbname): the role backup-push uses')] };
    if (mode === 'require') return { items: [fail('postgres', message(err), 'set PGHOST, PGPORT, PGUSER (or --host, --port, --username) to reach the server, as for backup-push')] };
    return { items: [skip('postgres', `not reached (${message(err)}): its items were not checked; --pg makes this a failure`)] };
  }
  try {
    return await readSettings(session, ctx);
  } catch (err) {
    await session.close();
    const denied = (err as { sqlState?: string }).sqlState === '42501';
    return { items: [fail('postgres', message(err), denied ? `connect as a superuser, or grant ${session.target.user} pg_read_all_settings and pg_read_all_stats` : 'see the message')] };
  }
}

interface Settings {
  version: string;
  sysid: string;
  recovery: boolean;
  wal_level: string;
  archive_mode: string;
  archive_command: string;
  archive_library: string | null;
  archive_timeout: string;
}

async function readSettings(session: PgSession, ctx: PostgresCheckContext): Promise<{ items: CheckItem[]; facts: PgFacts }> {
  const s = (
    await session.query<Settings>(
      `select current_setting('server_version') as version,
              (select system_identifier::text from pg_control_system()) as sysid,
              pg_is_in_recovery() as recovery,
              current_setting('wal_level') as wal_level,
              current_setting('archive_mode') as archive_mode,
              current_setting('archive_command') as archive_command,
              current_setting('archive_library', true) as archive_library,
              (select setting from pg_settings where name = 'archive_timeout') as archive_timeout`,
    )
  ).rows[0]!;
  const t = session.target;
  const items: CheckItem[] = [];
  const role = s.recovery ? 'standby' : 'primary';
  const where = `PostgreSQL ${s.version} (${role}) at host=${t.host} port=${t.port} user=${t.user}`;
  if (session.serverVersionNum < MIN_SERVER_VERSION_NUM) items.push(fail('postgres', `${where}: walts needs PostgreSQL 9.6 or newer`, 'upgrade PostgreSQL (walts is tested with 15)'));
  else items.push(ok('postgres', where));

  items.push(s.wal_level === 'replica' || s.wal_level === 'logical' ? ok('wal_level', s.wal_level) : fail('wal_level', `${s.wal_level}: WAL is not enough to restore a base backup`, 'wal_level = replica (restart PostgreSQL)'));

  const receiver = s.archive_mode === 'off' ? await receiverSource(session, s.sysid, ctx) : undefined;
  if (receiver?.connected) {
    // WAL reaches the store through wal-receive, as backup-push accepts it: the archiver's items do not apply.
    items.push(ok('archive_mode', `off; WAL reaches the store through walts wal-receive on replication slot ${receiver.slot} (connected; receive/${receiver.slot}/receiver.json names this cluster)`));
    items.push(skip('archive_command', 'not used: a receiver streams the WAL'), skip('archive_timeout', 'not used: a receiver streams the WAL'), skip('archiver', 'not used: a receiver streams the WAL'));
    return { items, facts: { session, systemIdentifier: s.sysid, archiveMode: s.archive_mode, walLevel: s.wal_level, inRecovery: s.recovery } };
  }
  if (receiver) {
    items.push(fail('archive_mode', `off, and the receiver of replication slot ${receiver.slot} is not connected: no WAL reaches the store`, `start walts wal-receive --slot ${receiver.slot} (contrib/systemd/walts-receive.service), or archive_mode = on`));
  } else if (s.archive_mode === 'off') {
    items.push(fail('archive_mode', 'off: PostgreSQL archives nothing', "archive_mode = on (restart PostgreSQL), or stream WAL into this store with walts wal-receive --slot NAME"));
  } else if (s.recovery && s.archive_mode === 'on') items.push(warn('archive_mode', 'on, but this server is a standby: it archives nothing until promoted', "fine if the primary archives; archive_mode = always to archive here too"));
  else items.push(ok('archive_mode', s.archive_mode));

  const command = s.archive_mode === 'off' ? await configuredArchiveCommand(session) : s.archive_command;
  if (command === undefined) items.push(skip('archive_command', 'archive_mode is off, so PostgreSQL shows it as (disabled), and pg_file_settings is not readable by this role'));
  else items.push(archiveCommandItem(command, s.archive_library ?? undefined, ctx));
  items.push(archiveTimeoutItem(Number(s.archive_timeout)));
  items.push(await archiverItem(session));
  return { items, facts: { session, systemIdentifier: s.sysid, archiveMode: s.archive_mode, walLevel: s.wal_level, inRecovery: s.recovery } };
}

/**
 * With archive_mode off: the physical slot on this server whose receiver feeds this store (a
 * connected one first), or undefined when there is none or the store or the slots cannot be read.
 */
async function receiverSource(session: PgSession, systemId: string, ctx: PostgresCheckContext): Promise<{ slot: string; connected: boolean } | undefined> {
  if (!ctx.feedingSlots) return undefined;
  try {
    const feeding = await ctx.feedingSlots(systemId);
    if (feeding.size === 0) return undefined;
    const rows = (await session.query<{ slot_name: string; active: boolean }>(`select slot_name, active from pg_replication_slots where slot_type = 'physical' order by active desc, slot_name`)).rows;
    const slot = rows.find((r) => feeding.has(r.slot_name));
    return slot ? { slot: slot.slot_name, connected: slot.active === true } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * With archive_mode off PostgreSQL shows archive_command as "(disabled)"; the configured value is
 * still in the configuration files (pg_file_settings: superusers, or pg_read_all_settings on 16+).
 */
async function configuredArchiveCommand(session: PgSession): Promise<string | undefined> {
  try {
    const r = await session.query<{ setting: string }>(`select setting from pg_file_settings where name = 'archive_command' and applied order by seqno desc limit 1`);
    return r.rows[0]?.setting ?? '';
  } catch {
    return undefined;
  }
}

export function archiveTimeoutItem(seconds: number): CheckItem {
  if (seconds === 0) return warn('archive_timeout', '0 (off): on a quiet server the newest writes can stay unarchived for hours', 'archive_timeout = 60s (each switch archives one segment, mostly empty, which compresses well)');
  if (seconds > LARGE_ARCHIVE_TIMEOUT_S) return warn('archive_timeout', `${seconds} s: up to that much of the newest writes exists only on this server`, 'archive_timeout = 60s to 300s');
  return ok('archive_timeout', `${seconds} s`);
}

/** pg_stat_archiver: failing now (the last failure is newer than the last success) is a failure. */
async function archiverItem(session: PgSession): Promise<CheckItem> {
  const a = await walArchiverStatus(session);
  const lastOk = a.lastArchivedTime ? Date.parse(a.lastArchivedTime) : undefined;
  const lastFail = a.lastFailedTime ? Date.parse(a.lastFailedTime) : undefined;
  const archived = a.lastArchivedWal ? `last archived ${a.lastArchivedWal} at ${a.lastArchivedTime}` : 'nothing archived yet';
  if (lastFail !== undefined && (lastOk === undefined || lastFail > lastOk)) {
    return fail('archiver', `failing: ${a.lastFailedWal} failed at ${a.lastFailedTime} (${a.failedCount} failures), ${archived}`, 'read the walts wal-push lines in the PostgreSQL log and fix their cause; PostgreSQL keeps retrying');
  }
  return ok('archiver', `${archived}${a.failedCount > 0 ? `; ${a.failedCount} earlier failures, recovered` : ''}`);
}
