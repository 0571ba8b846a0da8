import type { CommandModule } from 'yargs';
import { UsageError } from '../errors';
import { checkSlotName } from '../postgres/replication/commands';
import { parseDuration } from '../retention/window';
import { runCommand } from './run';

interface Args {
  slot: string;
  'create-slot': boolean;
  'flush-interval': string;
  'status-interval': string;
  synchronous: boolean;
}

/** application_name of the replication connection unless PGAPPNAME says otherwise: the name synchronous_standby_names lists. */
export const RECEIVER_APPLICATION_NAME = 'walts_receive';

/** `1s`, `2m`, or a bare number of seconds (`0.5`). */
function intervalMs(flag: string, text: string): number {
  const ms = /^\d+(\.\d+)?$/.test(text) ? Math.round(Number(text) * 1000) : parseDuration(text)?.ms;
  if (ms === undefined || !(ms >= 100) || ms > 3_600_000) throw new UsageError(`--${flag} ${JSON.stringify(text)} is not an interval from 0.1 s to 1 h (e.g. 1s, 10s, 0.5)`);
  return ms;
}

export const walReceiveCommand: CommandModule<object, Args> = {
  command: 'wal-receive',
  describe: 'stream WAL through a physical replication slot into the archive (long-running, like pg_receivewal)',
  builder: (y) =>
    y
      .option('slot', { type: 'string', demandOption: true, describe: 'the physical replication slot to stream from (no default: two receivers on one slot lose WAL)' })
      .option('create-slot', { type: 'boolean', default: false, describe: 'create the slot (RESERVE_WAL) when it does not exist at start' })
      .option('flush-interval', { type: 'string', default: '1s', describe: 'write the segment in progress to the store this often while WAL arrives' })
      .option('status-interval', { type: 'string', default: '10s', describe: "report positions to the server this often (well under its wal_sender_timeout)" })
      .option('synchronous', {
        type: 'boolean',
        default: false,
        describe: `flush each WAL write to the store at once, so that the server may list this receiver (application_name walts_receive, or PGAPPNAME) in synchronous_standby_names: commits then wait for the store`,
      })
      .example('walts wal-receive --slot walts --create-slot', 'connects with the libpq environment (PGHOST, PGUSER, .pgpass, PGSSLMODE)')
      .epilogue(
        `WAL is staged locally in a private directory under WALTS_SPOOL_DIR/receive (default: the system
temp directory): one segment at most. Completed segments are archived exactly like wal-push; the
segment in progress is kept in the store as receive/<slot>/<segment>.partial. The slot advances only
to what the store has acknowledged. See docs/streaming.md.
Exit status:
  0  never on its own: runs until SIGTERM/SIGINT, then stops cleanly and dies by that signal
  2  usage or configuration error; the slot does not exist (without --create-slot) or is in use
     by another connection; no archive at WALTS_STORE
  3  the store belongs to another cluster (system identifier or segment size differ), or streamed
     WAL contradicts what is archived
  4  the server or the store stayed unreachable for longer than WALTS_RETRY_DEADLINE`,
      ) as never,
  handler: (argv) => {
    let flushIntervalMs = 0;
    let statusIntervalMs = 0;
    return runCommand(
      'wal-receive',
      argv,
      async ({ config, deps, signal }) => {
        // Loaded here: the replication client is needed by no other command.
        const { ReplicationConnection } = await import('../postgres/replication/connection');
        const { makeStagingDir } = await import('../ops/receive/staging');
        const { walReceive } = await import('../ops/walReceive');
        const { promises: fsp } = await import('node:fs');
        const stagingDir = await makeStagingDir(config.spoolDir, argv.slot);
        try {
          const r = await walReceive(deps, {
            slot: argv.slot,
            createSlot: argv['create-slot'],
            flushIntervalMs,
            statusIntervalMs,
            synchronous: argv.synchronous,
            stagingDir,
            signal,
            connect: () => ReplicationConnection.open({ application: RECEIVER_APPLICATION_NAME }),
          });
          return { slot: r.slot, timeline: r.timeline, flushed: r.flushed, reconnects: r.reconnects };
        } finally {
          await fsp.rm(stagingDir, { recursive: true, force: true });
        }
      },
      {
        preflight: () => {
          checkSlotName(argv.slot);
          flushIntervalMs = intervalMs('flush-interval', argv['flush-interval']);
          statusIntervalMs = intervalMs('status-interval', argv['status-interval']);
        },
      },
    );
  },
};
