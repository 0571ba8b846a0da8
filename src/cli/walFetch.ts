import type { CommandModule } from 'yargs';
import { NotFoundError, UsageError } from '../errors';
import { walFetch } from '../ops/walFetch';
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
    runCommand('wal-fetch', argv, async ({ deps, signal }) => {
      const r = await walFetch(deps, { name: argv.name, dest: argv.dest, cwd: process.cwd(), signal });
      return { wal: r.name, key: r.key, bytes_in: r.storedBytes, bytes_out: r.plainBytes, digest_verified: r.digestVerified };
    }, {
      retryWindow: 'command',
      preflight: () => {
        if (!parseWalFileName(argv.name)) throw new UsageError(`${JSON.stringify(argv.name)} is not a WAL file name; refusing to fetch`);
      },
      // PostgreSQL asks for files past the end of the archive all the time (and probes for history files).
      isExpected: (err) => err instanceof NotFoundError,
    }),
};
