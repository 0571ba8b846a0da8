/**
 * The pure parts of the restore drill: where replay must end (the archive's chain), what the server
 * log says, which PostgreSQL binaries run the copy, and what is refused before anything runs.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compareWithArchiveEnd } from '../../../src/ops/restoreTest/archiveEnd';
import { preflight, refuseRoot } from '../../../src/ops/restoreTest/drill';
import { findPgBinaries, parseMajor, type BinaryProbe } from '../../../src/ops/restoreTest/pgBinaries';
import { readLogFacts } from '../../../src/ops/restoreTest/serverLog';
import { checkChain } from '../../../src/retention/walChain';
import { UsageError } from '../../../src/errors';

const SEG = 16 * 1024 * 1024;

describe('replay proved against the end of the archive', () => {
  const chainOf = (segNos: number[], histories = new Map()) => checkChain({ segments: new Map([[1, new Set(segNos)]]), histories, segmentSize: SEG }, '000000010000000000000003');

  test('replay that ended in the newest archived segment (or after a switch out of it) reached the end', () => {
    const chain = chainOf([3, 4, 5, 6]);
    expect(compareWithArchiveEnd(chain, 0x7000000n, 1, SEG)).toMatchObject({ ok: true, detail: expect.stringContaining('segment 000000010000000000000006') });
    expect(compareWithArchiveEnd(chain, 0x6001234n, 1, SEG).ok).toBe(true);
    // WAL archived after the listing: replay went further, still fine.
    expect(compareWithArchiveEnd(chain, 0x9000000n, 1, SEG).ok).toBe(true);
  });

  test('a segment missing in the middle: replay stopped before the end, and the gap is named', () => {
    const chain = chainOf([3, 4, 6]);
    const r = compareWithArchiveEnd(chain, 0x5000000n, 1, SEG);
    expect(r.ok).toBe(false);
    expect(r.detail).toContain('the archive holds WAL up to 000000010000000000000006');
    expect(r.detail).toContain('missing from the archive: 000000010000000000000005');
  });

  test('replay on another timeline than the one the archive leads to is not the end', () => {
    const histories = new Map([[2, [{ timeline: 1, switchLsn: 0x5000100n }]]]);
    const chain = checkChain({ segments: new Map([[1, new Set([3, 4, 5])], [2, new Set([5, 6])]]), histories, segmentSize: SEG }, '000000010000000000000003');
    expect(chain.newest).toBe('000000020000000000000006');
    expect(compareWithArchiveEnd(chain, 0x5000100n, 1, SEG).ok).toBe(false);
    expect(compareWithArchiveEnd(chain, 0x6800000n, 2, SEG).ok).toBe(true);
  });

  test('an archive without WAL from the backup on cannot have been replayed to its end', () => {
    expect(compareWithArchiveEnd(chainOf([]), 0x3000100n, 1, SEG).ok).toBe(false);
  });
});

describe('the server log', () => {
  test('consistency, the target stop and the first FATAL are read from PostgreSQL lines; wal-fetch failures from its JSON lines', () => {
    const log = [
      '2026-12-02 13:01:15.001 UTC [100] LOG:  starting archive recovery',
      '2026-12-02 13:01:16.002 UTC [100] LOG:  consistent recovery state reached at 0/3000100',
      '{"level":"info","cmd":"wal-fetch","msg":"wal-fetch done"}',
      '{"level":"error","cmd":"wal-fetch","error_kind":"integrity","msg":"wal-fetch failed: 000000010000000000000005: SHA-256 mismatch"}',
      '{"level":"error","cmd":"wal-fetch","error_kind":"unavailable","msg":"wal-fetch failed: later"}',
      '2026-12-02 13:01:17.003 UTC [100] LOG:  recovery stopping before commit of transaction 751, time 2026-12-02 13:00:00.5+00',
      '2026-12-02 13:01:17.004 UTC [100] FATAL:  could not restore file "000000010000000000000005" from archive: child process exited with exit code 255',
      '2026-12-02 13:01:17.005 UTC [99] FATAL:  later',
      'not json {',
    ].join('\n');
    expect(readLogFacts(log)).toEqual({
      consistentAt: '0/3000100',
      targetStop: 'recovery stopping before commit of transaction 751, time 2026-12-02 13:00:00.5+00',
      fatal: 'could not restore file "000000010000000000000005" from archive: child process exited with exit code 255',
      walFetchError: { message: 'wal-fetch failed: 000000010000000000000005: SHA-256 mismatch', kind: 'integrity' },
    });
    expect(readLogFacts('')).toEqual({});
  });
});

describe('PostgreSQL binaries of the backup major', () => {
  const probe = (dirs: Record<string, string>, pgConfig?: string): BinaryProbe => ({
    isExecutable: (p) => Object.keys(dirs).some((d) => p === `${d}/postgres` || p === `${d}/psql`),
    output: async (cmd) => (cmd === 'pg_config' ? pgConfig : Object.entries(dirs).find(([d]) => cmd === `${d}/postgres`)?.[1]),
  });

  test('--version parsing', () => {
    expect(parseMajor('postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)')).toBe(15);
    expect(parseMajor('postgres (PostgreSQL) 17devel')).toBe(17);
    expect(parseMajor('postgres (PostgreSQL) 9.6.24')).toBeUndefined();
    expect(parseMajor('nonsense')).toBeUndefined();
  });

  test('pg_config --bindir first when it is the right major, else /usr/lib/postgresql/<major>/bin', async () => {
    const dirs = { '/opt/pg16/bin': 'postgres (PostgreSQL) 16.4', '/usr/lib/postgresql/15/bin': 'postgres (PostgreSQL) 15.18' };
    const b = await findPgBinaries(15, undefined, probe(dirs, '/opt/pg16/bin\n'));
    expect(b).toMatchObject({ dir: '/usr/lib/postgresql/15/bin', postgres: '/usr/lib/postgresql/15/bin/postgres', psql: '/usr/lib/postgresql/15/bin/psql', amcheck: undefined });
    expect((await findPgBinaries(16, undefined, probe(dirs, '/opt/pg16/bin'))).dir).toBe('/opt/pg16/bin');
  });

  test('--pg-bin is the only place looked at, and a wrong major is refused naming what was found', async () => {
    const dirs = { '/opt/pg16/bin': 'postgres (PostgreSQL) 16.4', '/usr/lib/postgresql/15/bin': 'postgres (PostgreSQL) 15.18' };
    await expect(findPgBinaries(15, '/opt/pg16/bin', probe(dirs))).rejects.toThrow(/no PostgreSQL 15 server binaries found .*\/opt\/pg16\/bin: PostgreSQL 16.*--pg-bin/);
    await expect(findPgBinaries(14, undefined, probe(dirs))).rejects.toBeInstanceOf(UsageError);
  });
});

describe('refused before anything runs (exit 2, no record)', () => {
  test('root', () => {
    expect(() => refuseRoot(0)).toThrow(/runuser -u postgres -- walts restore-test/);
    expect(() => refuseRoot(1001)).not.toThrow();
    expect(() => refuseRoot(undefined)).not.toThrow();
  });

  test('bad options, all at once: a bad time, --keep without --dest, an unreadable --sql, a non-empty --dest', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'walts-drill-unit-'));
    mkdirSync(join(dir, 'full'));
    writeFileSync(join(dir, 'full', 'PG_VERSION'), '15\n');
    await expect(preflight({ targetTime: 'yesterday', keep: true, sqlFile: join(dir, 'none.sql') })).rejects.toMatchObject({
      problems: [expect.stringContaining('--target-time'), expect.stringContaining('--keep needs --dest'), expect.stringContaining('--sql')],
    });
    await expect(preflight({ dest: join(dir, 'full'), keep: false })).rejects.toThrow(/is not empty/);
    await expect(preflight({ dest: join(dir, 'no', 'parent'), keep: false })).rejects.toThrow(/is not an existing directory/);
    await expect(preflight({ dest: join(dir, 'new'), keep: true })).resolves.toBe(join(dir, 'new'));
    rmSync(dir, { recursive: true, force: true });
  });
});
