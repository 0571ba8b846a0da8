import { backupSummary, compareByStart, parseSentinel, SENTINEL_FORMAT, type BackupSentinel } from '../../../src/backup/sentinel';
import { IntegrityError } from '../../../src/errors';

const KEY = 'walts_v1/basebackups/base_000000010000000000000004_00000028/sentinel.json';

function sentinel(over: Partial<BackupSentinel> = {}): BackupSentinel {
  return {
    format: SENTINEL_FORMAT,
    name: 'base_000000010000000000000004_00000028',
    label: 'walts backup 2026-11-21T22:40:00.000Z',
    walts_version: '0.1.0',
    system_identifier: '7311234567890123456',
    pg_version: '15.8',
    pg_version_num: 150008,
    timeline: 1,
    start_lsn: '0/4000028',
    stop_lsn: '0/4000138',
    start_wal_file: '000000010000000000000004',
    stop_wal_file: '000000010000000000000004',
    start_time: '2026-11-21T22:40:00.000Z',
    finish_time: '2026-11-21T22:41:05.250Z',
    wal_segment_size: 16 * 1024 * 1024,
    data_checksums: true,
    from_standby: false,
    hostname: 'db1',
    data_directory: '/var/lib/postgresql/15/main',
    file_count: 1000,
    data_size: 50_000_000,
    stored_size: 12_000_000,
    codecs: ['lz4', 'pgp'],
    volumes: [{ key: 'v1', stored_size: 11_999_000, size: 50_400_000, sha256: 'a'.repeat(64) }],
    manifest: { key: 'm', stored_size: 1000, size: 90_000, sha256: 'b'.repeat(64) },
    tablespaces: [{ oid: 16400, name: 'fast', location: '/mnt/fast' }],
    backup_label: 'START WAL LOCATION: 0/4000028 (file 000000010000000000000004)\n',
    tablespace_map: '16400 /mnt/fast\n',
    ...over,
  };
}

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('did not throw');
}

describe('parseSentinel', () => {
  it('reads a sentinel back', () => {
    const s = sentinel();
    expect(parseSentinel(JSON.stringify(s, null, 2), KEY)).toEqual(s);
  });

  it('refuses text that is not JSON, naming the key', () => {
    const err = thrown(() => parseSentinel('{"name": "base_', KEY));
    expect(err).toBeInstanceOf(IntegrityError);
    expect(err.message).toMatch(new RegExp(`^${KEY} is not valid JSON \\(`));
  });

  it('refuses missing fields, naming each, and other formats', () => {
    const { stop_lsn: _a, manifest: _b, ...rest } = sentinel();
    const err = thrown(() => parseSentinel(JSON.stringify(rest), KEY));
    expect(err).toBeInstanceOf(IntegrityError);
    expect(err.message).toBe(`${KEY} is not a walts format-1 backup sentinel (missing stop_lsn, manifest)`);
    expect(thrown(() => parseSentinel(JSON.stringify(sentinel({ backup_label: null as unknown as string })), KEY)).message).toContain('missing backup_label');
    expect(thrown(() => parseSentinel(JSON.stringify({ ...sentinel(), format: 2 }), KEY)).message).toBe(`${KEY} is not a walts format-1 backup sentinel`);
    for (const text of ['null', '"text"', '42', '[]']) {
      const e = thrown(() => parseSentinel(text, KEY));
      expect(e).toBeInstanceOf(IntegrityError);
      expect(e.message).toMatch(new RegExp(`^${KEY} is not a walts format-1 backup sentinel`));
    }
  });
});

describe('compareByStart', () => {
  it('orders by start LSN as a 64-bit number, across the 32-bit boundary, then by timeline', () => {
    const names = (list: BackupSentinel[]) => [...list].sort(compareByStart).map((s) => s.name);
    const a = sentinel({ name: 'a', start_lsn: '0/FFFFFFFF' });
    const b = sentinel({ name: 'b', start_lsn: '1/0' });
    const c = sentinel({ name: 'c', start_lsn: '0/A0000000' });
    const d = sentinel({ name: 'd', start_lsn: '1F/28' });
    const e = sentinel({ name: 'e', start_lsn: '2/28' });
    expect(names([b, d, a, e, c])).toEqual(['c', 'a', 'b', 'e', 'd']);
    expect(compareByStart(a, b)).toBeLessThan(0);
    expect(compareByStart(b, a)).toBeGreaterThan(0);
    const t2 = sentinel({ name: 't2', start_lsn: '1/0', timeline: 2 });
    expect(compareByStart(b, t2)).toBeLessThan(0);
    expect(compareByStart(b, sentinel({ start_lsn: '1/00000000' }))).toBe(0);
    expect(compareByStart(sentinel({ start_lsn: '0/ffffffff' }), sentinel({ start_lsn: '0/FFFFFFFF' }))).toBe(0);
  });
});

describe('backupSummary', () => {
  it('has the snake_case fields list/show print', () => {
    const sum = backupSummary(sentinel());
    expect(sum).toEqual({
      name: 'base_000000010000000000000004_00000028',
      start_time: '2026-11-21T22:40:00.000Z',
      finish_time: '2026-11-21T22:41:05.250Z',
      duration_seconds: 65.3,
      start_lsn: '0/4000028',
      stop_lsn: '0/4000138',
      timeline: 1,
      pg_version: '15.8',
      system_identifier: '7311234567890123456',
      data_size: 50_000_000,
      stored_size: 12_000_000,
      file_count: 1000,
      wal_start: '000000010000000000000004',
      wal_stop: '000000010000000000000004',
      tablespaces: [{ oid: 16400, name: 'fast', location: '/mnt/fast' }],
      from_standby: false,
      hostname: 'db1',
      label: 'walts backup 2026-11-21T22:40:00.000Z',
    });
    for (const k of Object.keys(sum)) expect(k).toMatch(/^[a-z]+(_[a-z]+)*$/);
    // No secrets or bulky text in the summary.
    expect(sum).not.toHaveProperty('backup_label');
    expect(sum).not.toHaveProperty('volumes');
  });
});
