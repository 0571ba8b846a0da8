import type { CommandModule } from 'yargs';
import { IntegrityError, NotFoundError } from '../errors';
import { verify, type VerifyReport } from '../ops/verify';
import { table } from './format';
import { runCommand } from './run';

interface Args {
  json?: boolean;
  deep?: boolean;
  'leftover-age': number;
  parallel: number;
}

export const verifyCommand: CommandModule<object, Args> = {
  command: 'verify',
  describe: 'check that every backup is complete, its WAL continuous and the history not forked (--deep: and every digest)',
  builder: (y) =>
    y
      .option('json', { type: 'boolean', describe: 'the report as JSON' })
      .option('deep', { type: 'boolean', describe: 'download and check the SHA-256 of every backup part and WAL file (needs the private key)' })
      .option('leftover-age', { type: 'number', default: 24, describe: 'hours after which a backup without sentinel is reported as a leftover' })
      .option('parallel', { type: 'number', default: 4, describe: 'objects downloaded at once with --deep' })
      .example('walts verify', 'after each nightly backup, from the same timer')
      .example('walts verify --deep --json', 'weekly, on a host with the private key')
      .epilogue(
        `Checks every complete backup: all its parts exist with the sizes its sentinel records, and the WAL
from its start segment to the newest archived segment is continuous, following timeline switches
(.history files; on an encrypted store reading them needs the private key once a timeline has
switched). Gaps are named. A forked history is a problem: a timeline that went on after another
timeline branched off it (two servers archiving into one prefix: a restored copy or a former
primary kept archiving), named with both timelines and the branch LSN. Leftovers of failed backups,
WAL older than every backup and the dead end a point-in-time restore leaves on the old timeline are
reported as orphans (they do not fail the check).
Exit status:
  0  at least one complete backup, and everything holds
  1  the archive holds no complete backup: nothing to restore from
  2  configuration error: no archive at WALTS_STORE (run walts init), or --deep on an encrypted
     archive without WALTS_PGP_PRIVATE_KEY (checked once, before anything is read)
  3  problems found (listed)
  4  store unavailable: directory or bucket missing, or unreachable after retries`,
      ) as never,
  handler: (argv) =>
    runCommand('verify', argv, async ({ deps, config, signal }) => {
      const report = await verify(deps, { deep: argv.deep === true, canDecrypt: config.pgp.privateKeyPath !== undefined, leftoverAgeMs: argv['leftover-age'] * 3_600_000, parallel: Math.max(1, Math.floor(argv.parallel)), signal });
      process.stdout.write(argv.json ? JSON.stringify(report, null, 2) + '\n' : textReport(report));
      const n = report.problems.length + report.backups.reduce((k, b) => k + b.problems.length, 0);
      if (n > 0) throw new IntegrityError(`verify found ${n} problem(s)`);
      if (report.backups.length === 0) throw new NotFoundError(`no complete backup in ${deps.storage.description}: nothing to restore from (run walts backup-push)`);
      return { backups: report.backups.length, wal_objects: report.wal_objects, deep: report.deep, orphans: report.orphans.length, streamed: report.streamed.map((s) => ({ slot: s.slot, segment: s.segment, bytes: s.bytes, end_lsn: s.end_lsn, age_s: s.age_s, ok: s.problem === undefined })) };
    }),
};

function textReport(r: VerifyReport): string {
  const lines: string[] = [];
  if (r.backups.length === 0) lines.push('no complete backup in the store');
  else lines.push(table([['backup', 'tli', 'wal_from', 'wal_to', 'segments', 'status'], ...r.backups.map((b) => [b.name, String(b.timeline), b.wal_from, b.wal_to ?? '-', String(b.wal_segments), b.problems.length === 0 ? 'ok' : 'PROBLEMS'])]).trimEnd());
  for (const b of r.backups) for (const p of b.problems) lines.push(`problem: ${b.name}: ${p}`);
  for (const p of r.problems) lines.push(`problem: ${p}`);
  for (const o of r.orphans) lines.push(`orphan: ${o}`);
  for (const s of r.streamed) {
    const at = s.end_lsn !== undefined ? `up to ${s.end_lsn} (${s.segment}, ${s.bytes} bytes received)` : s.segment;
    lines.push(`streamed: slot ${s.slot}: ${at}${s.age_s !== undefined ? `, written ${s.age_s} s ago` : ''}${s.complete_archived ? ', complete segment archived too' : ''}${s.problem ? ': DOES NOT VERIFY' : ''}`);
  }
  const failed = r.backups.length === 0 ? 'FAILED: nothing restorable' : 'FAILED: see the problems above';
  lines.push(r.ok ? `ok: ${r.backups.length} backup(s) restorable to the newest archived WAL${r.deep ? ', every digest checked' : ''}` : failed, '');
  return lines.join('\n');
}
