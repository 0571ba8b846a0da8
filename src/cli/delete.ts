import type { Argv, CommandModule } from 'yargs';
import { UsageError } from '../errors';
import { deleteOp, type DeleteResult } from '../ops/delete';
import { parsePgTimestamp } from '../postgres/timestamp';
import type { RetentionRule } from '../retention/policy';
import { DURATION_FORMS, parseDuration, parseRetainArgument } from '../retention/window';
import { formatBytes, table } from './format';
import { runCommand } from './run';

interface Args {
  confirm?: boolean;
  json?: boolean;
  'leftover-age': number;
  count?: string;
  target?: string;
  duration?: string;
  now?: string;
}

const EPILOGUE = `Without --confirm nothing is deleted: the plan is printed, with the rule that keeps or deletes
each backup and each WAL range. Only complete backups count, ordered by start LSN.
window <duration> (or retain <duration>) keeps every backup that finished within the last
<duration> (on this machine's clock) plus the newest that finished before the window start, so
every point of the window stays restorable; a duration is ${DURATION_FORMS}.
WAL before the start of the oldest backup kept is deleted on every timeline; .history files are
always kept; a backup still in progress (no sentinel, touched within --leftover-age) and the WAL it
needs are never touched. A delete that was interrupted is finished by the next run.
Exit status: 0 planned or done; 1 the backup named does not exist; 2 bad arguments or
configuration; 4 store unavailable (run it again: it resumes).`;

function shared(y: Argv<object>): Argv<Args> {
  return y
    .option('confirm', { type: 'boolean', describe: 'really delete (without it: a dry run that prints the plan)' })
    .option('json', { type: 'boolean', describe: 'print the plan (and what was deleted) as JSON' })
    .option('leftover-age', { type: 'number', default: 24, describe: 'hours after which a backup without sentinel counts as a failed leftover' })
    // A seam for tests (a window derived from real times without racing the clock) and for asking
    // "what did the plan look like then": never later than the real clock, so it can only keep more.
    .option('now', { type: 'string', hidden: true, describe: 'plan as if the clock read this time (not later than the real clock)' })
    .epilogue(EPILOGUE) as Argv<Args>;
}

export const deleteCommand: CommandModule<object, Args> = {
  command: 'delete <rule>',
  describe: 'delete old backups and the WAL only they needed (dry run without --confirm)',
  builder: (y) =>
    shared(y)
      .command({
        command: 'retain <count>',
        describe: 'keep the <count> newest complete backups (a duration such as 7d: the same as window)',
        builder: (yy: Argv<object>) =>
          shared(yy)
            .positional('count', { type: 'string', demandOption: true })
            .example('walts delete retain 8 --confirm', 'daily, from cron')
            .example('walts delete retain 7d --confirm', 'the same as delete window 7d') as never,
        handler: (argv: Args) => run(argv, () => retainRule(String(argv.count))),
      } as never)
      .command({
        command: 'window <duration>',
        describe: 'keep what a restore to any point of the last <duration> needs (e.g. 7d)',
        builder: (yy: Argv<object>) =>
          shared(yy)
            .positional('duration', { type: 'string', demandOption: true })
            .example('walts delete window 7d --confirm', 'daily: every point of the last 7 days stays restorable') as never,
        handler: (argv: Args) => run(argv, () => windowRule(String(argv.duration))),
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
      .demandCommand(1, 'name a rule: retain <count|duration>, window <duration>, before <name|time> or everything') as never,
  handler: () => undefined,
};

function retainRule(text: string): RetentionRule {
  const a = parseRetainArgument(text);
  if (!a) throw new UsageError(`retain needs a whole number of backups (at least 1) or a duration, ${DURATION_FORMS}; got ${JSON.stringify(text)}`);
  return a.kind === 'count' ? { kind: 'retain', count: a.count } : { kind: 'window', durationMs: a.duration.ms, text: a.duration.text };
}

function windowRule(text: string): RetentionRule {
  const d = parseDuration(text);
  if (!d) throw new UsageError(`window needs a duration, ${DURATION_FORMS}; got ${JSON.stringify(text)}`);
  return { kind: 'window', durationMs: d.ms, text: d.text };
}

function parseNow(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const t = parsePgTimestamp(text);
  if (!t || !t.hasOffset) throw new UsageError(`--now: ${JSON.stringify(text)} is not a time with an offset (e.g. '2026-10-01 00:00:00+00')`);
  return t.epochMs;
}

function beforeRule(target: string): RetentionRule {
  if (/^base_/.test(target)) return { kind: 'before-backup', name: target };
  const t = parsePgTimestamp(target);
  if (!t) throw new UsageError(`before: ${JSON.stringify(target)} is neither a backup name nor a time (e.g. '2026-10-01 00:00:00+00')`);
  return { kind: 'before-time', epochMs: t.epochMs, text: target };
}

function run(argv: Args, rule: () => RetentionRule): Promise<void> {
  let parsed: RetentionRule | undefined;
  let nowMs: number | undefined;
  return runCommand(
    'delete',
    argv as unknown as Record<string, unknown>,
    async ({ deps, signal }) => {
      const r = await deleteOp(deps, { rule: parsed as RetentionRule, confirm: argv.confirm === true, leftoverAgeMs: argv['leftover-age'] * 3_600_000, nowMs, signal });
      process.stdout.write(argv.json ? JSON.stringify(jsonReport(r, argv.confirm === true), null, 2) + '\n' : textReport(r, parsed as RetentionRule, argv.confirm === true));
      const del = r.plan.backups.filter((b) => b.action === 'delete').map((b) => b.name);
      return { rule: (parsed as RetentionRule).kind, ...(r.plan.window ? { window_start: r.plan.window.start } : {}), confirm: argv.confirm === true, backups_deleted: argv.confirm ? del : [], wal_deleted: argv.confirm ? r.plan.walKeys.length : 0, keys_deleted: r.deletedKeys };
    },
    {
      preflight: () => {
        parsed = rule();
        nowMs = parseNow(argv.now);
      },
    },
  );
}

function jsonReport(r: DeleteResult, confirm: boolean): Record<string, unknown> {
  const window = r.plan.window ? { window_start: r.plan.window.start, window_anchor: r.plan.window.anchor ?? null } : {};
  return { confirm, ...window, wal_cutoff: r.plan.walCutoff ?? null, backups: r.plan.backups.map(({ keys, ...b }) => ({ ...b, objects: keys.length })), wal: r.plan.wal, deleted_keys: r.deletedKeys };
}

function textReport(r: DeleteResult, rule: RetentionRule, confirm: boolean): string {
  const lines: string[] = [];
  const what =
    rule.kind === 'retain' ? `retain ${rule.count}` : rule.kind === 'before-backup' ? `before ${rule.name}` : rule.kind === 'before-time' ? `before ${rule.text}` : rule.kind === 'window' ? `window ${rule.text}` : 'everything';
  lines.push(confirm ? `delete ${what}: done, ${r.deletedKeys} objects deleted` : `delete ${what}: dry run, nothing deleted (add --confirm to delete)`);
  const w = r.plan.window;
  if (w) {
    lines.push(
      w.anchor
        ? `window: from ${w.start} (this machine's clock); a restore to that point starts from ${w.anchor}`
        : `window: from ${w.start} (this machine's clock); no backup finished by then, so all are kept and the oldest point restorable is the oldest backup's finish`,
    );
  }
  lines.push('', 'backups:');
  if (r.plan.backups.length === 0) lines.push('  (none)');
  else lines.push(table(r.plan.backups.map((b) => ['  ' + b.action, b.name, b.complete ? 'complete' : 'unfinished', `${b.keys.length} objects`, b.reason])).trimEnd());
  lines.push('', 'WAL:');
  if (r.plan.wal.length === 0) lines.push('  (none)');
  else lines.push(table(r.plan.wal.map((w) => ['  ' + w.action, `timeline ${w.timeline}`, w.first === w.last ? w.first : `${w.first} .. ${w.last}`, `${w.count} files, ${formatBytes(w.bytes)}`, w.reason])).trimEnd());
  const nb = r.plan.backups.filter((b) => b.action === 'delete').length;
  lines.push('', `${confirm ? 'deleted' : 'would delete'}: ${nb} backup(s), ${r.plan.walKeys.length} WAL file(s)${r.plan.receivedKeys.length ? `, ${r.plan.receivedKeys.length} received partial segment(s)` : ''}${r.plan.otherKeys.length ? `, ${r.plan.otherKeys.length} other object(s)` : ''}`, '');
  return lines.join('\n');
}
