import type { CommandModule } from 'yargs';
import { backupSummary, type BackupSentinel } from '../backup/sentinel';
import { backupList, backupShow } from '../ops/backupList';
import { formatBytes, formatDuration, shortTime, table } from './format';
import { runCommand } from './run';

export const backupListCommand: CommandModule<object, { json?: boolean; detail?: boolean }> = {
  command: 'backup-list',
  describe: 'list complete base backups, oldest first',
  builder: (y) =>
    y
      .option('json', { type: 'boolean', describe: 'a JSON array of backups (snake_case fields), oldest first' })
      .option('detail', { type: 'boolean', describe: 'more columns: stop LSN, WAL range, file count' })
      .example('walts backup-list', 'a table; the first column is the name')
      .example("walts backup-list | tail -1 | cut -d ' ' -f1", 'the newest backup, WAL-E style')
      .example('walts backup-list --json | jq -r ".[-1].finish_time"', 'for scripts')
      .epilogue('Exit status: 0 listed (possibly nothing), 2 configuration error, 4 store unavailable.') as never,
  handler: (argv) =>
    runCommand('backup-list', argv, async ({ deps, signal }) => {
      const backups = await backupList(deps, signal);
      process.stdout.write(argv.json ? JSON.stringify(backups.map(backupSummary), null, 2) + '\n' : listTable(backups, argv.detail === true));
      return { backups: backups.length };
    }, { quietSuccess: true }),
};

export const backupShowCommand: CommandModule<object, { name: string; json?: boolean }> = {
  command: 'backup-show <name>',
  describe: 'details of one backup (a name or LATEST)',
  builder: (y) =>
    y
      .positional('name', { type: 'string', demandOption: true, describe: 'backup name, or LATEST' })
      .option('json', { type: 'boolean', describe: 'JSON object (snake_case fields)' })
      .example('walts backup-show LATEST', '')
      .epilogue('Exit status: 0 shown, 1 no such backup, 2 bad name or configuration, 4 store unavailable.') as never,
  handler: (argv) =>
    runCommand('backup-show', argv, async ({ deps, signal }) => {
      const b = await backupShow(deps, argv.name, signal);
      const summary = backupSummary(b);
      if (argv.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
      else process.stdout.write(table([['field', 'value'], ...Object.entries(summary).map(([k, v]) => [k, typeof v === 'object' ? JSON.stringify(v) : String(v)])]));
      return { backup: b.name };
    }, { quietSuccess: true }),
};

function listTable(backups: readonly BackupSentinel[], detail: boolean): string {
  const header = ['name', 'finished', 'duration', 'data', 'stored', 'start_lsn', 'tli', 'pg'];
  if (detail) header.push('stop_lsn', 'wal_start', 'wal_stop', 'files');
  const rows = backups.map((b) => {
    const s = backupSummary(b);
    const row = [b.name, shortTime(b.finish_time), formatDuration(Number(s['duration_seconds'])), formatBytes(b.data_size), formatBytes(b.stored_size), b.start_lsn, String(b.timeline), b.pg_version.split(' ')[0] ?? ''];
    if (detail) row.push(b.stop_lsn, b.start_wal_file, b.stop_wal_file, String(b.file_count));
    return row.map((c) => c.replace(/\s+/g, '_'));
  });
  return table([header, ...rows]);
}
