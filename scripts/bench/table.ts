/**
 * The results table: the issue's goal beside every ratio and whether it is met. Pure functions of the
 * medians, unit-tested in test/unit/bench/table.test.ts (missing peers included).
 */
import type { RowId } from './options';

export interface Goal {
  /** Largest value that meets the goal (a ratio, or segments waiting for the lag row). */
  readonly limit: number;
  readonly text: string;
}

/** Issue 8's goals. The single-call rows are against pgBackRest sync, the others its best mode. */
export const GOALS: Readonly<Record<RowId, Goal>> = {
  push16: { limit: 1.0, text: '≤ 1.0× pgBackRest' },
  push1: { limit: 2.0, text: '≤ 2.0× pgBackRest sync' },
  fetch16: { limit: 1.0, text: '≤ 1.0× pgBackRest' },
  fetch1: { limit: 2.0, text: '≤ 2.0× pgBackRest sync' },
  backup: { limit: 0.5, text: '≤ 0.5× pgBackRest' },
  restore: { limit: 0.67, text: '≤ 0.67× pgBackRest' },
  lag: { limit: 2, text: '≤ 2 segments waiting' },
  pitr: { limit: 1.2, text: '≤ 1.2× cp' },
};

/** "yes"/"no" against the goal, judged on the figure as printed (two decimals); "—" without one. */
export function met(id: RowId, value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return '—';
  return Number(value.toFixed(2)) <= GOALS[id].limit ? 'yes' : 'no';
}

export interface TableRow {
  readonly id: RowId;
  readonly work: string;
  readonly pgbr: string;
  readonly barman: string;
  readonly walts: string;
  /** walts ÷ the row's reference (pgBackRest, or cp for PITR). */
  readonly ratio?: number;
  /** The figure judged against the goal: the ratio, or segments waiting for the lag row. */
  readonly judged?: number;
  readonly pgp?: string;
}

export function renderTable(rows: readonly TableRow[], withPgp: boolean): string {
  const lines = [
    `| work | pgBackRest (best mode) | barman-cloud | walts | walts ÷ reference | goal | met |${withPgp ? ' walts + OpenPGP |' : ''}`,
    `|---|---|---|---|---|---|---|${withPgp ? '---|' : ''}`,
  ];
  for (const r of rows) {
    const ratio = r.ratio === undefined ? '—' : `${r.ratio.toFixed(2)}×`;
    lines.push(`| ${r.work} | ${r.pgbr} | ${r.barman} | ${r.walts} | ${ratio} | ${GOALS[r.id].text} | ${met(r.id, r.judged)} |${withPgp ? ` ${r.pgp ?? '—'} |` : ''}`);
  }
  return lines.join('\n') + '\n';
}

/** Medians of one timed row, per tool; undefined where not measured. */
export interface TimedMedians {
  /** Each pgBackRest mode measured: label (e.g. "sync") → seconds. */
  readonly pgbr: ReadonlyMap<string, number>;
  readonly barman?: number;
  readonly walts?: number;
  readonly pgp?: number;
}

export interface PeerPresence {
  readonly pgbrMissing: boolean;
  readonly barmanMissing: boolean;
}

/**
 * A timed row: the pgBackRest cell shows the mode the goal compares against (sync for single calls,
 * else the fastest mode), the ratio is walts ÷ that. A missing peer reads "missing", not a number.
 */
export function timedRow(id: RowId, work: string, m: TimedMedians, peers: PeerPresence, digits: number): TableRow {
  const fmt = (s: number | undefined) => (s === undefined ? '—' : s.toFixed(digits));
  const modes = [...m.pgbr].sort((a, b) => a[1] - b[1]);
  const ref = id === 'push1' || id === 'fetch1' ? modes.find(([label]) => label === 'sync') : modes[0];
  const pgbr = ref ? `${fmt(ref[1])} (${ref[0]})` : peers.pgbrMissing ? 'missing' : '—';
  const barman = peers.barmanMissing ? 'missing' : m.barman === undefined ? '—' : `${fmt(m.barman)} (uncompressed)`;
  const ratio = ref && m.walts !== undefined ? m.walts / ref[1] : undefined;
  return { id, work, pgbr, barman, walts: fmt(m.walts), ratio, judged: ratio, pgp: fmt(m.pgp) };
}
