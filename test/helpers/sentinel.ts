import { backupName } from '../../src/archive/layout';
import { SENTINEL_FORMAT, type BackupSentinel, type StoredPart } from '../../src/backup/sentinel';
import { segmentName } from '../../src/postgres/walName';

/** A plausible sentinel for a backup starting 0x28 bytes into segment `n` of timeline `tl` (16 MiB segments). */
export function fakeSentinel(tl: number, n: number, opts: { finish: string; volumes: StoredPart[]; manifest: StoredPart }): BackupSentinel {
  const SEG = 16 * 1024 * 1024;
  const start = segmentName({ timeline: tl, segNo: n }, SEG);
  const pos = n * SEG + 0x28;
  const lsn = `${Math.floor(pos / 2 ** 32).toString(16).toUpperCase()}/${(pos % 2 ** 32).toString(16).toUpperCase()}`;
  return {
    format: SENTINEL_FORMAT,
    name: backupName(start, 0x28),
    label: 'walts backup',
    walts_version: 'test',
    system_identifier: '7301234567890123456',
    pg_version: '15.8',
    pg_version_num: 150008,
    timeline: tl,
    start_lsn: lsn,
    stop_lsn: lsn,
    start_wal_file: start,
    stop_wal_file: segmentName({ timeline: tl, segNo: n + 1 }, SEG),
    start_time: opts.finish,
    finish_time: opts.finish,
    wal_segment_size: SEG,
    data_checksums: true,
    from_standby: false,
    hostname: 'db1',
    data_directory: '/pg',
    file_count: 1,
    data_size: opts.volumes.reduce((s, v) => s + v.size, 0),
    stored_size: opts.volumes.reduce((s, v) => s + v.stored_size, 0) + opts.manifest.stored_size,
    codecs: ['lz4'],
    volumes: opts.volumes,
    manifest: opts.manifest,
    tablespaces: [],
    backup_label: '',
    tablespace_map: null,
  };
}
