/**
 * `walts wal-prefetch AFTER DEST --segment-size N`: internal, not in --help. Started detached by
 * wal-fetch (Node, or bin/walts when the spool runs low) to download the segments after AFTER into
 * the spool; see src/ops/walPrefetch.ts. DEST (`%p`) only locates the default spool; it is never
 * written.
 */
import type { CommandModule } from 'yargs';
import { UsageError } from '../errors';
import { fetchSpoolDir } from '../ops/fetchSpool';
import { isSegmentName } from '../ops/pushRecord';
import { LINGER_MS, TURN_WAIT_MS, walPrefetch } from '../ops/walPrefetch';
import { isValidSegmentSize } from '../postgres/walName';
import { resolve } from 'node:path';
import { runCommand } from './run';

export const walPrefetchCommand: CommandModule<object, { after: string; dest: string; 'segment-size': number; 'hold-for'?: number; linger?: number }> = {
  command: 'wal-prefetch <after> <dest>',
  describe: false,
  builder: (y) =>
    y
      .positional('after', { type: 'string', demandOption: true })
      .positional('dest', { type: 'string', demandOption: true })
      .option('segment-size', { type: 'number', demandOption: true })
      // The wal-fetch that starts us: no download before it has exited (it competes for the CPU).
      .option('hold-for', { type: 'number' })
      // Seconds to stay after the last work or request (walPrefetch.ts LINGER_MS by default).
      .option('linger', { type: 'number' }) as never,
  handler: (argv) =>
    runCommand(
      'wal-prefetch',
      argv,
      async ({ config, deps, signal }) => {
        const dir = fetchSpoolDir(config.spoolDir, resolve(process.cwd(), argv.dest));
        const r = await walPrefetch(deps, {
          after: argv.after,
          segmentSize: argv['segment-size'],
          dir,
          depth: config.prefetch,
          concurrency: config.concurrency,
          identity: { store: config.store.url, endpoint: config.store.s3.endpoint },
          signal,
          holdFor: argv['hold-for'],
          lingerMs: argv.linger === undefined ? LINGER_MS : argv.linger * 1000,
          turnWaitMs: Math.min(TURN_WAIT_MS, config.store.ioTimeoutMs / 4),
          receivedPartials: config.fetchPartial,
        });
        return { after: argv.after, spool: dir, fetched: r.fetched.length, already_there: r.alreadyThere, end: r.end, error: r.error, skipped: r.skipped, answered: r.answered };
      },
      {
        // It may live for minutes (lingering): its retry deadline counts from a failure, not its start.
        retryWindow: 'outage',
        preflight: () => {
          if (!isSegmentName(argv.after)) throw new UsageError(`${JSON.stringify(argv.after)} is not a WAL segment name`);
          if (!isValidSegmentSize(argv['segment-size'])) throw new UsageError(`--segment-size ${argv['segment-size']} is not a WAL segment size`);
          const hold = argv['hold-for'];
          if (hold !== undefined && !(Number.isInteger(hold) && hold > 0)) throw new UsageError(`--hold-for ${hold} is not a process id`);
          if (argv.linger !== undefined && !(Number.isFinite(argv.linger) && argv.linger >= 0)) throw new UsageError(`--linger ${argv.linger} is not a number of seconds`);
        },
      },
    ),
};
