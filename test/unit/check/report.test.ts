import { jsonReport, nagiosLine, nagiosUnknown, summarize, textReport } from '../../../src/cli/checkReport';
import { fail, ok, skip, warn, type CheckItem } from '../../../src/ops/check/item';
import { archiveTimeoutItem } from '../../../src/ops/check/postgres';

const good: CheckItem[] = [ok('configuration', 'store file:///srv/walts'), ok('store put', 'wrote x'), skip('postgres', 'not reached')];
const warned: CheckItem[] = [...good, warn('archive_timeout', '0 (off)', 'archive_timeout = 60s')];
const failed: CheckItem[] = [...warned, fail('store put', 'AccessDenied 403', 'check the credentials'), fail('archive_command', "runs cp", "archive_command = 'walts wal-push %p'")];

describe('check report', () => {
  it('summarises: skipped items are not counted as checked, warnings do not fail', () => {
    expect(summarize(good)).toEqual({ ok: true, checked: 2, failed: [], warnings: [], skipped: ['postgres'] });
    expect(summarize(warned).ok).toBe(true);
    expect(summarize(failed)).toMatchObject({ ok: false, failed: ['store put', 'archive_command'], warnings: ['archive_timeout'] });
  });

  it('prints a table with the fix on the item line, then one summary line', () => {
    const text = textReport(failed);
    const lines = text.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^item\s+status\s+detail$/);
    expect(lines).toContain("archive_command  FAIL    runs cp; fix: archive_command = 'walts wal-push %p'");
    expect(lines).toContain('postgres         skip    not reached');
    expect(lines.at(-1)).toBe('walts check: 2 checks FAILED: store put, archive_command (1 warning: archive_timeout)');
    expect(textReport(good).trimEnd().split('\n').at(-1)).toBe('walts check: all 2 checks passed');
  });

  it('gives machines JSON with the same items', () => {
    const parsed = JSON.parse(jsonReport(failed)) as { ok: boolean; failed: string[]; checks: CheckItem[] };
    expect(parsed.ok).toBe(false);
    expect(parsed.failed).toEqual(['store put', 'archive_command']);
    expect(parsed.checks).toHaveLength(failed.length);
    expect(parsed.checks[3]).toEqual({ name: 'archive_timeout', status: 'warn', detail: '0 (off)', fix: 'archive_timeout = 60s' });
  });

  it('gives monitoring one plugin line with the Nagios exit codes', () => {
    expect(nagiosLine(good)).toEqual({ line: 'WALTS OK - 2 checks passed', exitCode: 0 });
    expect(nagiosLine(warned)).toEqual({ line: 'WALTS WARNING - 1 warning: archive_timeout', exitCode: 1 });
    expect(nagiosLine(failed)).toEqual({ line: 'WALTS CRITICAL - 2 checks failed: store put, archive_command', exitCode: 2 });
    expect(nagiosLine([fail('codec lz4', 'x', 'y')]).line).toBe('WALTS CRITICAL - 1 check failed: codec lz4');
    expect(nagiosUnknown('boom\n  at x')).toBe('WALTS UNKNOWN - boom at x');
  });
});

describe('archive_timeout advice', () => {
  it('warns when off or above an hour', () => {
    expect(archiveTimeoutItem(0).status).toBe('warn');
    expect(archiveTimeoutItem(60)).toEqual({ name: 'archive_timeout', status: 'ok', detail: '60 s' });
    expect(archiveTimeoutItem(3600).status).toBe('ok');
    expect(archiveTimeoutItem(7200)).toMatchObject({ status: 'warn', fix: 'archive_timeout = 60s to 300s' });
  });
});
