/** The bench's table: goals beside the ratios, judged as printed, and "missing" peers. */
import { GOALS, met, renderTable, timedRow } from '../../../scripts/bench/table';

const both = { pgbrMissing: false, barmanMissing: false };

describe('bench table', () => {
  it('has a goal for every row, as issue 8 states them', () => {
    expect(Object.fromEntries(Object.entries(GOALS).map(([k, g]) => [k, g.limit]))).toEqual({
      push16: 1.0,
      push1: 2.0,
      fetch16: 1.0,
      fetch1: 2.0,
      backup: 0.5,
      restore: 0.67,
      lag: 2,
      pitr: 1.2,
    });
  });

  it('judges a figure as printed (two decimals) and says nothing without one', () => {
    expect(met('push16', 1.004)).toBe('yes');
    expect(met('push16', 1.006)).toBe('no');
    expect(met('restore', 0.67)).toBe('yes');
    expect(met('lag', 3)).toBe('no');
    expect(met('lag', 2)).toBe('yes');
    expect(met('pitr', undefined)).toBe('—');
    expect(met('pitr', Number.NaN)).toBe('—');
  });

  it('compares the x16 rows with the fastest pgBackRest mode', () => {
    const pgbr = new Map([
      ['sync', 1.6],
      ['async, process-max=2', 1.0],
    ]);
    const r = timedRow('push16', 'w', { pgbr, walts: 0.8, barman: 17 }, both, 2);
    expect(r.pgbr).toBe('1.00 (async, process-max=2)');
    expect(r.ratio).toBeCloseTo(0.8);
    expect(r.barman).toBe('17.00 (uncompressed)');
  });

  it('compares single calls with pgBackRest sync even when async was faster', () => {
    const pgbr = new Map([
      ['sync', 0.2],
      ['async, process-max=2', 0.1],
    ]);
    const r = timedRow('fetch1', 'w', { pgbr, walts: 0.3 }, both, 3);
    expect(r.pgbr).toBe('0.200 (sync)');
    expect(r.ratio).toBeCloseTo(1.5);
    expect(met('fetch1', r.judged)).toBe('yes');
  });

  it('writes "missing" for absent peers and leaves the goal unjudged without pgBackRest', () => {
    const r = timedRow('push16', 'wal-push x16', { pgbr: new Map(), walts: 2.5 }, { pgbrMissing: true, barmanMissing: true }, 2);
    expect(r).toMatchObject({ pgbr: 'missing', barman: 'missing', walts: '2.50', ratio: undefined });
    const table = renderTable([r], false);
    expect(table).toContain('| wal-push x16 | missing | missing | 2.50 | — | ≤ 1.0× pgBackRest | — |');
  });

  it('renders the goal and verdict columns, and the OpenPGP column when asked', () => {
    const r = timedRow('backup', 'backup-push', { pgbr: new Map([['sync', 10]]), walts: 6, pgp: 7 }, both, 2);
    const table = renderTable([r, { id: 'lag', work: 'lag', pgbr: 'max 1', barman: 'not measured', walts: 'max 3', judged: 3 }], true);
    const lines = table.trim().split('\n');
    expect(lines[0]).toBe('| work | pgBackRest (best mode) | barman-cloud | walts | walts ÷ reference | goal | met | walts + OpenPGP |');
    expect(lines[2]).toBe('| backup-push | 10.00 (sync) | — | 6.00 | 0.60× | ≤ 0.5× pgBackRest | no | 7.00 |');
    expect(lines[3]).toBe('| lag | max 1 | not measured | max 3 | — | ≤ 2 segments waiting | no | — |');
  });
});
