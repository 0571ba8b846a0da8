import type { Argv, CommandModule } from 'yargs';
import { UsageError } from '../errors';
import { deleteOp, type DeleteResult } from '../ops/delete';
import { parsePgTimestamp } from '../postgres/timestamp';
import type { RetentionRule } from '../retention/policy';
import { formatBytes, table } from './format';
import { runCommand } from './run';

interface Args {
  confirm?: boolean;
  json?: boolean;
  'leftover-age': number;
  count?: string;
  target?: string;
}

const EPILOGUE = `Without --confirm nothing is deleted: the plan is printed, with the rule that keeps or deletes
each backup and each WAL range. Only complete backups count, ordered by start LSN. WAL before the
start of the oldest backup kept is deleted on every timeline; .history files are always kept; a
backup still in progress (no sentinel, touched within --leftover-age) and the WAL it needs are never
touched. A delete that was interrupted is finished by the next run.
Exit status: 0 planned or done; 1 the backup named does not exist; 2 bad arguments or
configuration; 4 store unavailable (run it again: it resumes).`;

function shared(y: Argv<object>): Argv<Args> {
  return y
    .option('confirm', { type: 'boolean', describe: 'really delete (without it: a dry run that prints the plan)' })
    .option('json', { type: 'boolean', describe: 'print the plan (and what was deleted) as JSON' })
    .option('leftover-age', { type: 'number', default: 24, describe: 'hours after which a backup without sentinel counts as a failed leftover' })
    .epilogue(EPILOGUE) as Argv<Args>;
}

export const deleteCommand: CommandModule<object, Args> = {
  command: 'delete <rule>',
  describe: 'delete old backups and the WAL only they needed (dry run without --confirm)',
  builder: (y) =>
    shared(y)
      .command({
        command: 'retain <count>',
        describe: 'keep the <count> newest complete backups',
        builder: (yy: Argv<object>) => shared(yy).positional('count', { type: 'string', demandOption: true }).example('walts delete retain 8 --confirm', 'daily, from cron') as never,
        handler: (argv: Args) => run(argv, () => {
          const n = /^\d+$/.test(String(argv.count)) ? Number(argv.count) : NaN;
          if (!Number.isInteger(n) || n < 1) throw new UsageError(`retain needs a whole number of backups, at least 1, got ${JSON.stringify(argv.count)}`);
          return { kind: 'retain', count: n };
        }),
      } as never)
      .command({
        command: 'before <target>',
        describe: 'delete the backups older than backup <target>, or finished before time <target>',
        builder: (yy: Argv<object>) =>
          shared(yy)
            .positional('target', { type: 'string', demandOption: true })
            .example('walts delete before base_000000010000000000000042_00000028 --confirm', '')
            .example("walts delete before '2026-10-01 00:00:00+00'", 'dry run') as never,
        handler: (argv: Args) => run(argv, () => beforeRule(String(argv.target))),
      } as never)
      .command({
        command: 'everything',
        describe: 'delete every backup and all WAL in the store',
        builder: (yy: Argv<object>) => shared(yy) as never,
        handler: (argv: Args) => run(argv, () => ({ kind: 'everything' })),
      } as never)
      .demandCommand(1, 'name a rule: retain <count>, before <name|time> or everything') as never,
  handler: () => undefined,
};

function beforeRule(target: string): RetentionRule {
  if (/^base_/.test(target)) return { kind: 'before-backup', name: target };
  const t = parsePgTimestamp(target);
  if (!t) throw new UsageError(`before: ${JSON.stringify(target)} is neither a backup name nor a time (e.g. '2026-10-01 00:00:00+00')`);
  return { kind: 'before-time', epochMs: t.epochMs, text: target };
}

function run(argv: Args, rule: () => RetentionRule): Promise<void> {
  let parsed: RetentionRule | undefined;
  return runCommand(
    'delete',
    argv as unknown as Record<string, unknown>,
    async ({ deps, signal }) => {
      const r = await deleteOp(deps, { rule: parsed as RetentionRule, confirm: argv.confirm === true, leftoverAgeMs: argv['leftover-age'] * 3_600_000, signal });
      process.stdout.write(argv.json ? JSON.stringify(jsonReport(r, argv.confirm === true), null, 2) + '\n' : textReport(r, parsed as RetentionRule, argv.confirm === true));
      const del = r.plan.backups.filter((b) => b.action === 'delete').map((b) => b.name);
      return { rule: (parsed as RetentionRule).kind, confirm: argv.confirm === true, backups_deleted: argv.confirm ? del : [], wal_deleted: argv.confirm ? r.plan.walKeys.length : 0, keys_deleted: r.deletedKeys };
    },
    { preflight: () => void (parsed = rule()) },
  );
}

function jsonReport(r: DeleteResult, confirm: boolean): Record<string, unknown> {
  return { confirm, wal_cutoff: r.plan.walCutoff ?? null, backups: r.plan.backups.map(({ keys, ...b }) => ({ ...b, objects: keys.length })), wal: r.plan.wal, deleted_keys: r.deletedKeys };
}

function textReport(r: DeleteResult, rule: RetentionRule, confirm: boolean): string {
  const lines: string[] = [];
  const what = rule.kind === 'retain' ? `retain ${rule.count}` : rule.kind === 'before-backup' ? `before ${rule.name}` : rule.kind === 'before-time' ? `before ${rule.text}` : 'everything';
  lines.push(confirm ? `delete ${what}: done, ${r.deletedKeys} objects deleted` : `delete ${what}: dry run, nothing deleted (add --confirm to delete)`);
  lines.push('', 'backups:');
  if (r.plan.backups.length === 0) lines.push('  (none)');
  else lines.push(table(r.plan.backups.map((b) => ['  ' + b.action, b.name, b.complete ? 'complete' : 'unfinished', `${b.keys.length} objects`, b.reason])).trimEnd());
  lines.push('', 'WAL:');
  if (r.plan.wal.length === 0) lines.push('  (none)');
  else lines.push(table(r.plan.wal.map((w) => ['  ' + w.action, `timeline ${w.timeline}`, w.first === w.last ? w.first : `${w.first} .. ${w.last}`, `${w.count} files, ${formatBytes(w.bytes)}`, w.reason])).trimEnd());
  const nb = r.plan.backups.filter((b) => b.action === 'delete').length;
  lines.push('', `${confirm ? 'deleted' : 'would delete'}: ${nb} backup(s), ${r.plan.walKeys.length} WAL file(s)${r.plan.otherKeys.length ? `, ${r.plan.otherKeys.length} other object(s)` : ''}`, '');
  return lines.join('\n');
}
