/**
 * The PostgreSQL half of status with a scripted session: each answer stands on its own, and a role
 * without pg_monitor gets the archiver counters and an "unknown" that names the missing role.
 */
import { PgQueryError, type PgSession } from '../../../src/postgres/client';
import { gatherPostgres } from '../../../src/ops/status/postgres';

function session(answers: Array<[RegExp, () => unknown[]]>): PgSession & { closed: boolean } {
  const s = {
    serverVersionNum: 150010,
    backendPid: 1,
    target: { host: '/tmp', port: 5432, user: 'mon', database: 'postgres', ssl: false },
    closed: false,
    async query(sql: string) {
      const hit = answers.find(([re]) => re.test(sql));
      if (!hit) throw new Error(`unexpected query ${sql}`);
      const rows = hit[1]();
      return { rows, rowCount: rows.length };
    },
    async close() {
      s.closed = true;
    },
  };
  return s as unknown as PgSession & { closed: boolean };
}

const ARCHIVER = {
  archived_count: 41,
  failed_count: 2,
  last_archived_wal: '000000010000000000000009',
  last_archived_time: new Date('2026-12-02T11:00:00Z'),
  last_failed_wal: '00000001000000000000000A',
  last_failed_time: new Date('2026-12-02T11:30:00Z'),
  stats_reset: null,
};

describe('gatherPostgres', () => {
  it('a superuser: identity, archiver counters and the .ready files', async () => {
    const s = session([
      [/pg_is_in_recovery/, () => [{ r: false, m: 'on' }]],
      [/pg_control_system/, () => [{ id: '7301234567890123456' }]],
      [/pg_stat_archiver/, () => [ARCHIVER]],
      [/pg_ls_archive_statusdir/, () => [{ n: 3 }]],
      [/pg_replication_slots/, () => [
        { slot_name: 'walts', active: true, restart_lsn: '0/A000000', wal_status: 'reserved', retained_bytes: 1048576, connected: true, application_name: 'walts_receive', client_addr: '192.0.2.10', state: 'streaming', sync_state: 'async', flush_lsn: '0/A0FF000', flush_lag_bytes: 4096, flush_lag_seconds: 0.25, reply_time: new Date('2026-12-02T12:00:00.000Z') },
        { slot_name: 'old', active: false, restart_lsn: null, wal_status: null, retained_bytes: null, connected: false, application_name: null, client_addr: null, state: null, sync_state: null, flush_lsn: null, flush_lag_bytes: null, flush_lag_seconds: null, reply_time: null },
      ]],
    ]);
    const r = await gatherPostgres(async () => s);
    expect(r).toEqual({
      reachable: true,
      target: '/tmp:5432/postgres as mon',
      server_version_num: 150010,
      system_identifier: '7301234567890123456',
      in_recovery: false,
      archive_mode: 'on',
      archiver: { ...ARCHIVER, last_archived_time: '2026-12-02T11:00:00.000Z', last_failed_time: '2026-12-02T11:30:00.000Z' },
      ready_files: 3,
      replication_slots: [
        { slot: 'walts', active: true, restart_lsn: '0/A000000', retained_bytes: 1048576, wal_status: 'reserved', receiver: { application_name: 'walts_receive', client_addr: '192.0.2.10', state: 'streaming', sync_state: 'async', flush_lsn: '0/A0FF000', flush_lag_bytes: 4096, flush_lag_seconds: 0.25, reply_time: '2026-12-02T12:00:00.000Z' } },
        { slot: 'old', active: false, restart_lsn: null, retained_bytes: null, wal_status: null },
      ],
    });
    expect(s.closed).toBe(true);
  });

  it('a role without pg_monitor: the counters, and the .ready count unknown naming the role it needs', async () => {
    const denied = () => {
      throw new PgQueryError('permission denied for function pg_ls_archive_statusdir (SQLSTATE 42501)', '42501');
    };
    const r = await gatherPostgres(async () =>
      session([
        [/pg_is_in_recovery/, () => [{ r: false, m: 'on' }]],
        [/pg_control_system/, denied],
        [/pg_stat_archiver/, () => [ARCHIVER]],
        [/pg_ls_archive_statusdir/, denied],
      ]),
    );
    expect(r.archiver).toMatchObject({ failed_count: 2 });
    expect(r.ready_files).toEqual({ unknown: expect.stringMatching(/^pg_ls_archive_statusdir\(\) refused: the role needs pg_monitor/) });
    expect(r.system_identifier).toEqual({ unknown: expect.stringMatching(/^pg_control_system\(\) refused: /) });
  });
});
