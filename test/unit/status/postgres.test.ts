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
