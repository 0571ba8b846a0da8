/** `walts status` for people: one section per subject, `unknown (why)` where nothing is proven. Pure. */
import { formatBytes, formatDuration, shortTime } from '../../cli/format';
import { isUnknown, type Known, type SlotStatus, type StatusReport } from './report';

export function formatStatus(r: StatusReport): string {
  const out: string[] = [];
  const section = (title: string, lines: readonly [string, string][]) => {
    out.push(title);
    const width = Math.max(...lines.map(([k]) => k.length));
    for (const [k, v] of lines) out.push(`  ${`${k}:`.padEnd(width + 1)} ${v}`);
    out.push('');
  };
  const ago = (seconds: number | null | undefined) => (seconds == null ? '' : ` (${formatDuration(seconds)} ago)`);

  section('Store', [
    ['location', r.store.description],
    ['reachable', r.store.reachable ? 'yes' : `NO: ${r.store.error ?? 'unknown error'}`],
  ]);
  if (r.store.reachable) {
    section('Cluster', known(r.cluster, (c) => [
      ['system identifier', c.system_identifier],
      ['PostgreSQL major', c.pg_major === null ? 'unknown (not recorded)' : String(c.pg_major)],
      ['WAL segment size', formatBytes(c.wal_segment_size)],
    ]));
    section('WAL archive', known(r.last_archived_wal, (w) => [
      ['last archived', w.name],
      ['stored at', w.stored_at ? `${shortTime(w.stored_at)}${ago(w.age_seconds)}` : 'unknown (the store keeps no write time)'],
      ['WAL objects', String(w.objects)],
    ]));
    const b = r.backups;
    section('Backups', !b ? [['backups', 'unknown']] : !b.newest ? [['count', '0 (no complete backup)']] : [
      ['count', String(b.count)],
      ['newest', b.newest.name],
      ['finished', `${shortTime(b.newest.finish_time)}${ago(b.newest.age_seconds)}`],
      ['size', `${formatBytes(b.newest.data_size)} (${formatBytes(b.newest.stored_size)} stored)`],
      ['duration', formatDuration(b.newest.duration_seconds)],
    ]);
    section('Point-in-time recovery window', known(r.pitr_window, (w) => [
      ['from', `${shortTime(w.from)} (end of ${w.backup})`],
      ['to', `${shortTime(w.to)} (${w.to_wal} archived)`],
      ['length', formatDuration(w.seconds)],
    ]));
    if (r.streamed?.length) {
      section('Streamed WAL (receivers)', r.streamed.map((s): [string, string] => [
        `slot ${s.slot}`,
        `${s.segment}, ${s.bytes === null ? 'torn or without its record' : `${formatBytes(s.bytes)} received, up to ${s.end_lsn}`}${s.stored_at ? `, written ${shortTime(s.stored_at)}${ago(s.age_seconds)}` : ''}`,
      ]));
    }
    section('Restore drill', known(r.restore_drill, (d) => {
      if (!d.last) return [['last drill', 'none recorded (run walts restore-test)']];
      const lines: [string, string][] = [
        ['last drill', `${d.last.ok ? 'passed' : 'FAILED'}: ${d.last.backup}, finished ${shortTime(d.last.finished_at)}${ago(d.last.age_seconds)}, took ${formatDuration(d.last.duration_seconds)}`],
      ];
      if (!d.last.ok) lines.push(['error', d.last.error ?? 'unknown']);
      if (!d.last.ok) lines.push(['last passed', d.last_success ? `${d.last_success.backup}, finished ${shortTime(d.last_success.finished_at)}${ago(d.last_success.age_seconds)}` : 'none recorded']);
      if (d.invalid > 0) lines.push(['invalid records', String(d.invalid)]);
      return lines;
    }));
  }
  if (r.postgres) {
    const p = r.postgres;
    if (!p.reachable) section('PostgreSQL', [['reachable', `NO: ${p.error ?? 'unknown error'}`]]);
    else {
      const lines: [string, string][] = [
        ['server', `${p.target} (version ${p.server_version_num}${p.in_recovery ? ', in recovery' : ''})`],
        ['system identifier', value(p.system_identifier, (v) => v)],
        ['archive_mode', p.archive_mode ?? 'unknown'],
      ];
      if (p.identity_mismatch) lines.push(['WRONG CLUSTER', p.identity_mismatch]);
      if (p.archiver && !isUnknown(p.archiver)) {
        const a = p.archiver;
        lines.push(['archived', `${a.archived_count}${a.last_archived_wal ? `, last ${a.last_archived_wal} at ${shortTime(a.last_archived_time ?? '')}` : ''}`]);
        lines.push(['failed', `${a.failed_count}${a.last_failed_wal ? `, last ${a.last_failed_wal} at ${shortTime(a.last_failed_time ?? '')}` : ''}`]);
        if (failingNow(a)) lines.push(['ARCHIVING FAILS', `the last attempt (${a.last_failed_wal}) failed after the last success: see the PostgreSQL log`]);
      } else lines.push(['archiver', value(p.archiver, () => '')]);
      lines.push(['.ready files waiting', value(p.ready_files, String)]);
      section('PostgreSQL', lines);
      if (p.replication_slots !== undefined && (isUnknown(p.replication_slots) || p.replication_slots.length > 0)) {
        section('Replication slots (physical)', known(p.replication_slots, (slots) => slots.map((sl): [string, string] => [`slot ${sl.slot}`, slotLine(sl)])));
      }
    }
  }
  out.push(`(gathered at ${shortTime(r.generated_at)} in ${r.duration_seconds.toFixed(1)}s by walts ${r.walts_version})`);
  return out.join('\n') + '\n';
}

function slotLine(sl: SlotStatus): string {
  const held = `${sl.retained_bytes === null ? 'retains unknown WAL' : `retains ${formatBytes(sl.retained_bytes)}`}${sl.wal_status && sl.wal_status !== 'reserved' ? ` (${sl.wal_status})` : ''}`;
  const r = sl.receiver;
  if (!r) return `${sl.active ? 'active' : 'NOT CONNECTED'}, ${held}`;
  const who = [r.application_name, r.client_addr].filter(Boolean).join(' from ');
  const lag = r.flush_lag_bytes === null ? 'flush position unknown' : `flushed ${r.flush_lsn}, ${formatBytes(r.flush_lag_bytes)} behind${r.flush_lag_seconds === null ? '' : ` (${r.flush_lag_seconds.toFixed(1)} s)`}`;
  const details = [who, r.state, r.sync_state !== 'async' ? r.sync_state : null].filter(Boolean).join(', ');
  return `connected${details ? ` (${details})` : ''}, ${lag}, ${held}`;
}

/** The archiver's last failure is newer than its last success: archiving is failing now. */
export function failingNow(a: { last_failed_time: string | null; last_archived_time: string | null }): boolean {
  if (!a.last_failed_time) return false;
  return !a.last_archived_time || Date.parse(a.last_failed_time) > Date.parse(a.last_archived_time);
}

function known<T>(v: Known<T> | undefined, lines: (v: T) => [string, string][]): [string, string][] {
  if (v === undefined) return [['status', 'unknown']];
  return isUnknown(v) ? [['status', `unknown (${v.unknown})`]] : lines(v);
}

function value<T>(v: Known<T> | undefined, show: (v: T) => string): string {
  if (v === undefined) return 'unknown';
  return isUnknown(v) ? `unknown (${v.unknown})` : show(v);
}
