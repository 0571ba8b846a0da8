import { resolve } from 'node:path';
import type { CommandModule } from 'yargs';
import { SETTINGS, type Config } from '../config';
import { describeError, NotFoundError, UsageError } from '../errors';
import type { Logger } from '../log';
import { fetchSpoolDir, releaseLock } from '../ops/fetchSpool';
import { isSegmentName } from '../ops/pushRecord';
import { endIs, noteEnd, segmentSizeOf, startPrefetcher, type StartOutcome } from '../ops/prefetchStart';
import { walFetch, type WalFetchResult } from '../ops/walFetch';
import { parseWalFileName } from '../postgres/walName';
import { runCommand } from './run';

export const walFetchCommand: CommandModule<object, { name: string; dest: string }> = {
  command: 'wal-fetch <name> <dest>',
  describe: "restore one WAL file (PostgreSQL's restore_command)",
  builder: (y) =>
    y
      .positional('name', { type: 'string', demandOption: true, describe: '%f: the WAL file name' })
      .positional('dest', { type: 'string', demandOption: true, describe: '%p: where to write it, relative to PGDATA or absolute' })
      .option('fetch-error-exit-code', {
        type: 'number',
        describe: 'exit code for hard errors (default 255 stops recovery; a standby may prefer 1) [WALTS_FETCH_ERROR_EXIT_CODE]',
        group: 'Behaviour:',
      })
      .example("restore_command = 'walts wal-fetch %f %p'", 'in postgresql.auto.conf, with recovery.signal or standby.signal')
      .epilogue(
        `Exit status:
  0    the file is at <dest>, decoded and verified (SHA-256 and size recorded at push)
  1    the file is not in the archive (PostgreSQL: end of archived WAL). Said only inside an
       archive known to exist (walts_v1/archive.json readable)
  2    bad arguments (nothing written)
  255  hard error after retries: store unreachable, store directory or bucket missing, no
       archive at WALTS_STORE (an empty or unmounted directory, a wrong prefix), access denied,
       bad key, corrupt object, configuration error. Above 125 so PostgreSQL stops recovery
       instead of promoting without the missing WAL. Set WALTS_FETCH_ERROR_EXIT_CODE to change it.
Nothing is ever left at <dest> unless the exit status is 0.`,
      ) as never,
  handler: (argv) =>
    runCommand('wal-fetch', argv, async ({ config, deps, log, signal }) => {
      const identity = { store: config.store.url, endpoint: config.store.s3.endpoint };
      const cwd = process.cwd();
      const dest = resolve(cwd, argv.dest);
      const dir = fetchSpoolDir(config.spoolDir, dest);
      const segment = config.prefetch > 0 && isSegmentName(argv.name);
      // Not in the spool: the prefetcher is started at once, so that its start-up (a second Node)
      // overlaps this download instead of following it. Not for a name the store just said it does
      // not have (a standby polling at the end of the archive starts nothing per poll).
      let early: { outcome: StartOutcome | 'failed'; pid?: number } | undefined;
      const beforeStore = async () => {
        const segmentSize = await segmentSizeOf(cwd);
        if (segmentSize === undefined || (await endIs(dir, argv.name))) return;
        early = await prefetch(config, argv, log, { dir, after: argv.name, segmentSize, dest, fromSpool: false });
        if (early.outcome === 'started') log.debug({ pid: early.pid, spool: dir }, 'started the prefetcher before the download');
      };
      const spool = config.prefetch > 0 ? { dir: () => dir, identity, beforeStore } : undefined;
      let r: WalFetchResult;
      try {
        r = await walFetch(deps, { name: argv.name, dest: argv.dest, cwd, signal, spool, receivedPartials: config.fetchPartial });
      } catch (err) {
        if (segment && err instanceof NotFoundError) {
          if (early?.pid !== undefined) await stopQuietly(dir, early.pid);
          await noteEnd(dir, argv.name);
        }
        throw err;
      }
      // Nothing follows a received partial in the archive: no prefetcher after one.
      const after = segment && r.source !== 'received' ? (early ?? (await prefetch(config, argv, log, { dir, after: r.name, segmentSize: r.plainBytes, dest, fromSpool: r.source === 'spool' }))) : undefined;
      const received = r.partial ? { received_bytes: r.partial.receivedBytes, end_lsn: r.partial.endLsn, slot: r.partial.slot } : {};
      return { wal: r.name, key: r.key, source: r.source, ...received, bytes_in: r.storedBytes, bytes_out: r.plainBytes, digest_verified: r.digestVerified, prefetch: after?.outcome };
    }, {
      retryWindow: 'command',
      preflight: () => {
        if (!parseWalFileName(argv.name)) throw new UsageError(`${JSON.stringify(argv.name)} is not a WAL file name; refusing to fetch`);
      },
      // PostgreSQL asks for files past the end of the archive all the time (and probes for history files).
      isExpected: (err) => err instanceof NotFoundError,
    }),
};

/** Starts the prefetcher (fetchSpool.ts rules); never fails the fetch. */
async function prefetch(
  config: Config,
  argv: Record<string, unknown>,
  log: Logger,
  at: { dir: string; after: string; segmentSize: number; dest: string; fromSpool: boolean },
): Promise<{ outcome: StartOutcome | 'failed'; pid?: number }> {
  try {
    return await startPrefetcher({ ...at, depth: config.prefetch, env: childEnv(argv), cwd: process.cwd() });
  } catch (err) {
    log.debug({ err: describeError(err) }, 'could not start the prefetcher');
    return { outcome: 'failed' };
  }
}

/** The early prefetcher of a name the store does not have has nothing to do: stopped, lock freed. */
async function stopQuietly(dir: string, pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    // already gone
  }
  await releaseLock(dir, pid);
}

/** The environment with this call's command-line settings as variables (a flag wins over both). */
function childEnv(argv: Record<string, unknown>): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const [name, flag] of Object.entries(SETTINGS)) {
    const v = flag ? argv[flag] : undefined;
    if (v !== undefined && v !== null) env[name] = String(v);
  }
  if (typeof argv['config'] === 'string') env['WALTS_CONFIG'] = argv['config'];
  return env;
}
