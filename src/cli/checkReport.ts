/**
 * The three outputs of `walts check`, from one list of items. Pure.
 *
 * - people: a table (item, status, what was found and, for warn/FAIL, the fix), then one summary line;
 * - machines: JSON (`--json`);
 * - monitoring: one line in the Nagios plugin format (`--nagios`, like `barman check --nagios`):
 *   `WALTS OK - ...`, `WALTS WARNING - ...`, `WALTS CRITICAL - 2 checks failed: store put, archive_command`,
 *   with the plugin exit codes 0 OK, 1 WARNING, 2 CRITICAL (3 UNKNOWN: see cli/check.ts).
 */
import type { CheckItem, CheckStatus } from '../ops/check/item';
import { table } from './format';

export interface CheckSummary {
  readonly ok: boolean;
  /** Items that ran (not skipped). */
  readonly checked: number;
  readonly failed: readonly string[];
  readonly warnings: readonly string[];
  readonly skipped: readonly string[];
}

export function summarize(items: readonly CheckItem[]): CheckSummary {
  const named = (s: CheckStatus) => items.filter((i) => i.status === s).map((i) => i.name);
  const failed = named('fail');
  return { ok: failed.length === 0, checked: items.filter((i) => i.status !== 'skip').length, failed, warnings: named('warn'), skipped: named('skip') };
}

const LABEL: Record<CheckStatus, string> = { ok: 'ok', warn: 'warn', fail: 'FAIL', skip: 'skip' };

export function textReport(items: readonly CheckItem[]): string {
  const rows = items.map((i) => [i.name, LABEL[i.status], i.fix ? `${i.detail}; fix: ${i.fix}` : i.detail]);
  return table([['item', 'status', 'detail'], ...rows]) + summaryLine(summarize(items)) + '\n';
}

export function summaryLine(s: CheckSummary): string {
  const warned = s.warnings.length > 0 ? ` (${plural(s.warnings.length, 'warning')}: ${s.warnings.join(', ')})` : '';
  if (!s.ok) return `walts check: ${plural(s.failed.length, 'check')} FAILED: ${s.failed.join(', ')}${warned}`;
  return `walts check: all ${plural(s.checked, 'check')} passed${warned}`;
}

export function jsonReport(items: readonly CheckItem[]): string {
  const s = summarize(items);
  return JSON.stringify({ ok: s.ok, failed: s.failed, warnings: s.warnings, skipped: s.skipped, checks: items }, null, 2) + '\n';
}

export const NAGIOS = { ok: 0, warning: 1, critical: 2, unknown: 3 } as const;

/** The plugin line and its exit code. Warnings alone are WARNING; any failure is CRITICAL. */
export function nagiosLine(items: readonly CheckItem[]): { line: string; exitCode: number } {
  const s = summarize(items);
  if (!s.ok) return { line: `WALTS CRITICAL - ${plural(s.failed.length, 'check')} failed: ${s.failed.join(', ')}`, exitCode: NAGIOS.critical };
  if (s.warnings.length > 0) return { line: `WALTS WARNING - ${plural(s.warnings.length, 'warning')}: ${s.warnings.join(', ')}`, exitCode: NAGIOS.warning };
  return { line: `WALTS OK - ${plural(s.checked, 'check')} passed`, exitCode: NAGIOS.ok };
}

/** The line for a check that could not run at all (an internal error): UNKNOWN, exit 3. */
export function nagiosUnknown(reason: string): string {
  return `WALTS UNKNOWN - ${reason.replace(/\s+/g, ' ')}`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
