/**
 * The database side of base backups against real PostgreSQL 15 clusters: connecting the libpq way
 * (socket/TCP, several hosts, passwords from PGPASSWORD and .pgpass, timeouts, errors), and the
 * non-exclusive backup API (start/stop/abort, backup_label and tablespace_map, server timeouts,
 * archive waits, standby backups).
 */
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { ConfigError, UnavailableError, UsageError } from '../../../src/errors';
import { abortBackup, describeArchiverStatus, startBackup, stopBackup, walArchiverStatus } from '../../../src/postgres/backupApi';
import { parseBackupLabel, stopWalFileName } from '../../../src/postgres/backupLabel';
import { PgNotice, PgQueryError, PgSession, connect, matchPgPass, pgPassHost } from '../../../src/postgres/client';
import { parseLsn } from '../../../src/postgres/walName';
import { Cluster, chownToPg, freePort, PG_OS_USER, trackClusters } from '../../helpers/pg';
import { runOk, runWalts } from '../../helpers/run';
import { startStore } from '../../helpers/stores';

const reg = trackClusters();
let main: Cluster;
const sessions: PgSession[] = [];

beforeAll(async () => {
  main = await reg.createCluster({ name: 'main', dataChecksums: true });
  await main.start();
});

afterAll(async () => {
  for (const s of sessions) await s.close();
  await reg.cleanupAll();
});

/** connect() with the cluster's PGHOST/PGPORT/PGUSER/PGDATABASE as the environment, tracked for cleanup. */
async function open(c: Cluster, env: Record<string, string> = {}, more: Parameters<typeof connect>[0] = {}): Promise<PgSession> {
  const s = await connect({ ...more, env: { PGPASSFILE: '/nonexistent/pgpass', ...c.pgEnv(), ...env } });
  sessions.push(s);
  return s;
}

async function connectError(options: Parameters<typeof connect>[0]): Promise<Error> {
  try {
    const s = await connect(options);
    await s.close();
  } catch (e) {
    return e as Error;
  }
  throw new Error('connect() unexpectedly succeeded');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, f: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await f())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------------------------------

describe('connect', () => {
  test('over the unix socket from PGHOST/PGPORT/PGUSER/PGDATABASE', async () => {
    const s = await open(main);
    expect(s.serverVersionNum).toBeGreaterThanOrEqual(150000);
    expect(s.target).toEqual({ host: main.socketDir, port: main.port, user: 'postgres', database: 'postgres', ssl: false });
    const r = await s.query<{ pid: number; app: string; db: string }>('select pg_backend_pid() as pid, current_setting($1) as app, current_database() as db', [
      'application_name',
    ]);
    expect(r.rows).toEqual([{ pid: s.backendPid, app: 'walts', db: 'postgres' }]);
    expect(r.rowCount).toBe(1);
    // TCP keepalives are on (they matter for TCP; the server sees the client's socket options).
    expect(s.closed).toBe(false);
    await s.close();
    expect(s.closed).toBe(true);
    await s.close(); // idempotent
  });

  test('over TCP with sslmode prefer falling back to plain (the server has ssl off); overrides win over the environment', async () => {
    const s = await open(main, { PGHOST: '/nonexistent', PGPORT: '1' }, { overrides: { host: '127.0.0.1', port: main.port } });
    expect(s.target).toMatchObject({ host: '127.0.0.1', port: main.port, ssl: false });
    expect((await s.query<{ ssl: boolean }>('select ssl from pg_stat_ssl where pid = pg_backend_pid()')).rows[0]!.ssl).toBe(false);
  });

  test('PGSSLMODE=require refuses a server without SSL', async () => {
    const e = await connectError({ env: { ...main.pgEnv(), PGHOST: '127.0.0.1', PGSSLMODE: 'require', PGPASSFILE: '/nonexistent' } });
    expect(e).toBeInstanceOf(UnavailableError);
    expect(e.message).toMatch(/SSL/);
    expect((e as UnavailableError).transient).toBe(false);
  });

  test('application name: PGAPPNAME, else options.application', async () => {
    const a = await open(main, {}, { application: 'walts backup-push' });
    expect((await a.query<{ n: string }>('show application_name')).rows[0]).toEqual({ application_name: 'walts backup-push' });
    const b = await open(main, { PGAPPNAME: 'from-env' }, { application: 'walts backup-push' });
    expect((await b.query('show application_name')).rows[0]).toEqual({ application_name: 'from-env' });
  });

  test('several hosts are tried in order (libpq PGHOST/PGPORT lists)', async () => {
    const dead = await freePort();
    const s = await open(main, { PGHOST: `127.0.0.1,${main.socketDir}`, PGPORT: `${dead},${main.port}` });
    expect(s.target).toMatchObject({ host: main.socketDir, port: main.port });
    // reconnect() goes to the host that answered, not the first in the list.
    const again = await s.reconnect();
    sessions.push(again);
    expect(again.target).toMatchObject({ host: main.socketDir, port: main.port });
    expect(again.backendPid).not.toBe(s.backendPid);
  });

  test('connection refused: UnavailableError (transient), one line naming host/port/user/database, never the password', async () => {
    const port = await freePort();
    const marker = 'PW-MARKER-7f3a9c';
    const e = await connectError({ env: { PGHOST: '127.0.0.1', PGPORT: String(port), PGUSER: 'backup_user', PGDATABASE: 'db1', PGPASSWORD: marker } });
    expect(e).toBeInstanceOf(UnavailableError);
    expect((e as UnavailableError).transient).toBe(true);
    expect(e.message).toContain(`host=127.0.0.1 port=${port} user=backup_user database=db1`);
    expect(e.message).toMatch(/connection refused/);
    expect(e.message).not.toContain('\n');
    expect(e.message).not.toContain(marker);
    expect(JSON.stringify(e)).not.toContain(marker);
  });

  test.each([
    ['a role that does not exist', { PGUSER: 'no_such_role' }, /role "no_such_role" does not exist \(SQLSTATE 28000\)/],
    ['a database that does not exist', { PGDATABASE: 'no_such_db' }, /database "no_such_db" does not exist \(SQLSTATE 3D000\)/],
  ])('%s: a ConfigError (exit 2), not "unavailable"', async (_what, env, message) => {
    const e = await connectError({ env: { ...main.pgEnv(), PGPASSFILE: '/nonexistent', ...env } });
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toMatch(message);
  });

  test('backup-push with a role that does not exist: exit 2 at once, one error line, no retries', async () => {
    const store = await startStore('file', reg, 'role-check');
    const r = await runWalts(['backup-push', main.dataDir], { ...store.env, ...main.pgEnv(), PGUSER: 'no_such_role', PGPASSFILE: '/nonexistent' }, { timeoutMs: 120_000, asUser: PG_OS_USER });
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/role \\?"no_such_role\\?" does not exist/);
    expect(r.stderr).not.toMatch(/retry/i);
  });

  test('no server socket: the message says so', async () => {
    const e = await connectError({ env: { PGHOST: path.join(main.dir, 'no-such-dir'), PGPORT: '5432', PGUSER: 'postgres' } });
    expect(e).toBeInstanceOf(UnavailableError);
    expect(e.message).toMatch(/no-such-dir port=5432 user=postgres database=postgres: no server socket/);
  });

  test('a server that accepts but never answers: the connect timeout applies (PGCONNECT_TIMEOUT or the option)', async () => {
    const held: net.Socket[] = [];
    const srv = net.createServer((sock) => held.push(sock));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    try {
      const t0 = Date.now();
      const e = await connectError({ env: { PGHOST: '127.0.0.1', PGPORT: String(port), PGUSER: 'x', PGCONNECT_TIMEOUT: '2' } });
      expect(e).toBeInstanceOf(UnavailableError);
      expect(e.message).toMatch(/timed out after 2000 ms/);
      expect(Date.now() - t0).toBeLessThan(10_000); // 5x the 2 s timeout: the machine may be loaded
      const e2 = await connectError({ env: { PGHOST: '127.0.0.1', PGPORT: String(port), PGUSER: 'x', PGCONNECT_TIMEOUT: '60' }, connectTimeoutMs: 700 });
      expect(e2.message).toMatch(/timed out after 700 ms/);
    } finally {
      for (const s of held) s.destroy();
      srv.close();
    }
  });

  test('bad settings: ConfigError naming each variable, before any connection attempt', async () => {
    const e = await connectError({ env: { PGPORT: 'fifty', PGSSLMODE: 'sometimes', PGCONNECT_TIMEOUT: 'soon', PGUSER: 'x' } });
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).problems).toEqual([
      expect.stringMatching(/^PGPORT: invalid port number "fifty"/),
      expect.stringMatching(/^PGSSLMODE: invalid value "sometimes"/),
      expect.stringMatching(/^PGCONNECT_TIMEOUT: /),
    ]);
    const e2 = await connectError({ env: { PGHOST: 'a,b,c', PGPORT: '1,2', PGUSER: 'x' } });
    expect(e2.message).toMatch(/PGPORT: could not match 2 port numbers to 3 hosts/);
    const e3 = await connectError({ env: { PGHOST: 'db.example', PGSSLMODE: 'verify-full', PGSSLROOTCERT: '/nonexistent/root.crt', PGUSER: 'x' } });
    expect(e3).toBeInstanceOf(ConfigError);
    expect(e3.message).toMatch(/root certificate file \/nonexistent\/root.crt does not exist/);
  });

  test('query errors carry the SQLSTATE; a killed session is UnavailableError; a query timeout cancels the statement', async () => {
    const s = await open(main);
    const e = await s.query('select * from no_such_table').catch((x: Error) => x);
    expect(e).toBeInstanceOf(PgQueryError);
    expect((e as PgQueryError).sqlState).toBe('42P01');
    expect((e as Error).message).toMatch(/no_such_table.*SQLSTATE 42P01/);

    const t0 = Date.now();
    const slow = await s.query('select pg_sleep(30)', [], { timeoutMs: 500 }).catch((x: Error) => x);
    expect(slow).toBeInstanceOf(UnavailableError);
    expect((slow as Error).message).toMatch(/did not finish within 500 ms and was cancelled/);
    expect(Date.now() - t0).toBeLessThan(5000);
    // Cancelled, not killed: the session is still usable.
    expect((await s.query<{ x: number }>('select 1 as x')).rows).toEqual([{ x: 1 }]);

    const killer = await open(main);
    await killer.query('select pg_terminate_backend($1)', [s.backendPid]);
    await waitFor('the session to notice', async () => s.closed || (await s.query('select 1').then(() => false, () => true)));
    const dead = await s.query('select 1').catch((x: Error) => x);
    expect(dead).toBeInstanceOf(UnavailableError);
    expect((dead as UnavailableError).transient).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------

describe('TLS (PGSSLMODE) against a server with ssl=on', () => {
  let tls: Cluster;
  let dir: string;
  let emptyHome: string;

  beforeAll(async () => {
    dir = await reg.tempDir('tls-certs', { forPostgres: true });
    emptyHome = await reg.tempDir('tls-home');
    const ossl = (args: string[]) => runOk('openssl', args, { cwd: dir });
    for (const ca of ['ca', 'other-ca']) {
      await ossl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${ca}.key`, '-out', `${ca}.crt`, '-subj', `/CN=walts test ${ca}`, '-days', '2']);
    }
    await ossl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost']);
    fs.writeFileSync(path.join(dir, 'san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
    await ossl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'san.ext']);
    for (const f of ['server.key', 'server.crt']) {
      await chownToPg(path.join(dir, f));
      fs.chmodSync(path.join(dir, f), 0o600);
    }
    tls = await reg.createCluster({
      name: 'tls',
      conf: { ssl: 'on', ssl_cert_file: path.join(dir, 'server.crt'), ssl_key_file: path.join(dir, 'server.key'), listen_addresses: '127.0.0.1,127.0.0.2' },
    });
    // 127.0.0.2 reaches the same server under an address the certificate does not name.
    fs.appendFileSync(path.join(tls.dataDir, 'pg_hba.conf'), 'host all all 127.0.0.2/32 trust\n');
    await tls.start();
  });

  const env = (host: string, extra: Record<string, string>) => ({
    PGHOST: host,
    PGPORT: String(tls.port),
    PGUSER: 'postgres',
    HOME: emptyHome,
    PGPASSFILE: '/nonexistent',
    ...extra,
  });
  async function sslInUse(e: Record<string, string>): Promise<boolean> {
    const s = await connect({ env: e });
    try {
      const r = (await s.query<{ ssl: boolean }>('select ssl from pg_stat_ssl where pid = pg_backend_pid()')).rows[0]!.ssl;
      expect(s.target.ssl).toBe(r);
      return r;
    } finally {
      await s.close();
    }
  }

  test('prefer (the default) and require use TLS without a root certificate; disable does not; a socket never does', async () => {
    expect(await sslInUse(env('127.0.0.1', {}))).toBe(true);
    expect(await sslInUse(env('127.0.0.1', { PGSSLMODE: 'require' }))).toBe(true);
    expect(await sslInUse(env('127.0.0.1', { PGSSLMODE: 'disable' }))).toBe(false);
    expect(await sslInUse(env('127.0.0.1', { PGSSLMODE: 'allow' }))).toBe(false);
    expect(await sslInUse(env(tls.socketDir, { PGSSLMODE: 'require' }))).toBe(false);
  });

  test('verify-full checks the CA and the host name; verify-ca only the CA', async () => {
    const ca = path.join(dir, 'ca.crt');
    expect(await sslInUse(env('127.0.0.1', { PGSSLMODE: 'verify-full', PGSSLROOTCERT: ca }))).toBe(true);
    expect(await sslInUse(env('127.0.0.2', { PGSSLMODE: 'verify-ca', PGSSLROOTCERT: ca }))).toBe(true);
    const wrongName = await connectError({ env: env('127.0.0.2', { PGSSLMODE: 'verify-full', PGSSLROOTCERT: ca }) });
    expect(wrongName).toBeInstanceOf(UnavailableError);
    expect(wrongName.message).toMatch(/host=127\.0\.0\.2 .*IP: 127\.0\.0\.2 is not in the cert's list/);
    const wrongCa = await connectError({ env: env('127.0.0.1', { PGSSLMODE: 'verify-ca', PGSSLROOTCERT: path.join(dir, 'other-ca.crt') }) });
    expect(wrongCa).toBeInstanceOf(UnavailableError);
    expect((wrongCa as UnavailableError).transient).toBe(false);
    expect(wrongCa.message).toMatch(/certificate/);
  });

  test('require with ~/.postgresql/root.crt present verifies the CA, as libpq does', async () => {
    const home = await reg.tempDir('tls-home-with-root');
    fs.mkdirSync(path.join(home, '.postgresql'));
    fs.copyFileSync(path.join(dir, 'other-ca.crt'), path.join(home, '.postgresql', 'root.crt'));
    const e = await connectError({ env: env('127.0.0.1', { PGSSLMODE: 'require', HOME: home }) });
    expect(e.message).toMatch(/certificate/);
    fs.copyFileSync(path.join(dir, 'ca.crt'), path.join(home, '.postgresql', 'root.crt'));
    expect(await sslInUse(env('127.0.0.2', { PGSSLMODE: 'require', HOME: home }))).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------

describe('passwords: PGPASSWORD and .pgpass (read by walts with libpq rules)', () => {
  let auth: Cluster;
  let dir: string;
  const PASSWORD = 'c0rrect:horse\\battery';

  beforeAll(async () => {
    auth = await reg.createCluster({ name: 'auth' });
    await auth.start();
    await auth.psql(`alter role postgres password '${PASSWORD.replace(/'/g, "''")}'`);
    // Unix socket stays trust (the harness' psql uses it); TCP needs SCRAM.
    const hba = path.join(auth.dataDir, 'pg_hba.conf');
    fs.writeFileSync(hba, 'local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n');
    await chownToPg(hba);
    await auth.reload();
    dir = await reg.tempDir('pgpass');
  });

  const tcpEnv = (extra: Record<string, string>) => ({ PGHOST: '127.0.0.1', PGPORT: String(auth.port), PGUSER: 'postgres', PGDATABASE: 'postgres', ...extra });

  function writePass(name: string, text: string, mode = 0o600): string {
    const f = path.join(dir, name);
    fs.writeFileSync(f, text);
    fs.chmodSync(f, mode);
    return f;
  }

  test('no password anywhere: a clear ConfigError (a setting to fix, not retried)', async () => {
    const e = await connectError({ env: tcpEnv({ PGPASSFILE: path.join(dir, 'absent') }) });
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toMatch(/the server requested a password but none was supplied \(PGPASSWORD is not set; no password file .*absent\)/);
  });

  test('a wrong PGPASSWORD: authentication failure, and the password is never in the message', async () => {
    const marker = 'WRONG-PW-MARKER-51d2';
    const e = await connectError({ env: tcpEnv({ PGPASSWORD: marker, PGPASSFILE: path.join(dir, 'absent') }) });
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toMatch(/password authentication failed for user "postgres" \(SQLSTATE 28P01\) \(password from PGPASSWORD\)/);
    expect(e.message).toContain(`host=127.0.0.1 port=${auth.port} user=postgres`);
    expect(e.message).not.toContain(marker);
  });

  test('the right PGPASSWORD, and overrides.password, work', async () => {
    const s = await connect({ env: tcpEnv({ PGPASSWORD: PASSWORD }) });
    await s.close();
    const s2 = await connect({ env: tcpEnv({ PGPASSWORD: 'wrong' }), overrides: { password: PASSWORD } });
    await s2.close();
  });

  test('.pgpass: escaped fields, wildcards, first match wins; comments skipped', async () => {
    const escaped = PASSWORD.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
    const good = writePass('good', `# comment\nother.host:*:*:*:nope\n127.0.0.1:${auth.port}:*:postgres:${escaped}\n*:*:*:*:too-late\n`);
    const s = await connect({ env: tcpEnv({ PGPASSFILE: good }) });
    expect((await s.query<{ u: string }>('select current_user as u')).rows[0]!.u).toBe('postgres');
    await s.close();

    const firstWins = writePass('first', `*:*:*:postgres:wrong-one\n127.0.0.1:${auth.port}:postgres:postgres:${escaped}\n`);
    const e = await connectError({ env: tcpEnv({ PGPASSFILE: firstWins }) });
    expect(e.message).toMatch(new RegExp(`password authentication failed.*\\(password from ${firstWins.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\)`));
    expect(e.message).not.toContain('wrong-one');

    const noMatch = writePass('nomatch', `127.0.0.1:${auth.port}:otherdb:postgres:${escaped}\n`);
    const e2 = await connectError({ env: tcpEnv({ PGPASSFILE: noMatch }) });
    expect(e2.message).toMatch(new RegExp(`no line in .*nomatch matches 127\\.0\\.0\\.1:${auth.port}:postgres:postgres`));
  });

  test('~/.pgpass is the default; a group/world-readable file is ignored, as libpq does', async () => {
    const home = await reg.tempDir('home');
    const escaped = PASSWORD.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
    fs.writeFileSync(path.join(home, '.pgpass'), `*:*:*:*:${escaped}\n`, { mode: 0o600 });
    const s = await connect({ env: tcpEnv({ HOME: home }) });
    await s.close();
    fs.chmodSync(path.join(home, '.pgpass'), 0o644);
    const e = await connectError({ env: tcpEnv({ HOME: home }) });
    expect(e.message).toMatch(/has group or world access and is ignored; permissions should be u=rw \(0600\) or less/);
    fs.chmodSync(path.join(home, '.pgpass'), 0o600);
    const notFile = path.join(home, 'dir');
    fs.mkdirSync(notFile);
    const e2 = await connectError({ env: tcpEnv({ PGPASSFILE: notFile }) });
    expect(e2.message).toMatch(/is not a plain file/);
  });

  test.each([
    ['exact', 'h:5432:db:u:pw', 'pw'],
    ['wildcards', '*:*:*:*:pw', 'pw'],
    ['wildcard only as a whole field', 'h*:5432:db:u:pw', undefined],
    ['escaped colon and backslash in a field', 'h:5432:d\\:b\\\\:u:pw', 'pw', { database: 'd:b\\' }],
    ['escaped password; ends at an unescaped colon', 'h:5432:db:u:p\\:w\\\\x:ignored', 'p:w\\x'],
    ['unescaped colon matches a colon in the host (IPv6)', '::1:5432:db:u:pw', 'pw', { host: '::1' }],
    ['comment', '#h:5432:db:u:pw', undefined],
    ['first match wins', 'h:*:*:*:first\nh:5432:db:u:second', 'first'],
    ['too few fields', 'h:5432:db:u', undefined],
    ['CRLF', 'h:5432:db:u:pw\r\n', 'pw'],
    ['port compared as text', 'h:05432:db:u:pw', undefined],
  ])('matchPgPass: %s', (_name, text, expected, key: Partial<{ host: string; database: string }> = {}) => {
    expect(matchPgPass(text, { host: 'h', port: 5432, database: 'db', user: 'u', ...key })).toBe(expected);
  });

  test('pgpass host of a unix socket: localhost only for the default socket directory', () => {
    expect(pgPassHost('/var/run/postgresql')).toBe('localhost');
    expect(pgPassHost('/tmp/sock')).toBe('/tmp/sock');
    expect(pgPassHost('db.example')).toBe('db.example');
  });
});

// ---------------------------------------------------------------------------------------------------

describe('backup API on a PG 15 primary', () => {
  test('start -> stop: LSN order, metadata, backup_label byte for byte, backup history file', async () => {
    const notices: PgNotice[] = [];
    const s = await open(main, {}, { application: 'walts backup-push', onNotice: (n) => notices.push(n) });
    const start = await startBackup(s, { label: 'walts test backup', fast: true });
    await main.psql('create table t1 as select g from generate_series(1, 50000) g');
    const stop = await stopBackup(s, { waitForArchive: false });

    const control = await main.controlData();
    expect(start).toMatchObject({
      label: 'walts test backup',
      fast: true,
      timeline: 1,
      systemIdentifier: control['Database system identifier'],
      pgVersionNum: s.serverVersionNum,
      walSegmentSize: 16 * 1024 * 1024,
      dataDirectory: main.dataDir,
      blockSize: 8192,
      dataChecksums: true,
      inRecovery: false,
    });
    expect(start.pgVersion).toBe(await main.psql('show server_version'));
    expect(start.startWalFile).toBe(await main.psql(`select pg_walfile_name('${start.startLsn}')`)); // not on a boundary
    expect(parseLsn(stop.stopLsn)).toBeGreaterThan(parseLsn(start.startLsn));
    expect(Date.parse(stop.stopTime)).toBeGreaterThanOrEqual(Date.parse(start.startTime));

    // backup_label: what the server returned, parsed, agreeing with the start.
    const text = stop.backupLabel.toString('utf8');
    expect(text).toMatch(/^START WAL LOCATION: 0\/[0-9A-F]+ \(file [0-9A-F]{24}\)\nCHECKPOINT LOCATION: /);
    expect(stop.label).toEqual(parseBackupLabel(text));
    expect(stop.label).toMatchObject({
      startLsn: start.startLsn,
      startWalFile: start.startWalFile,
      startTimeline: 1,
      backupMethod: 'streamed',
      backupFrom: 'primary',
      label: 'walts test backup',
    });
    expect(parseLsn(stop.label.checkpointLsn)).toBeGreaterThanOrEqual(parseLsn(start.startLsn));
    expect(stop.tablespaceMap).toBeUndefined();
    expect(stop.inRecovery).toBe(false);

    // The server's own record of this backup (<start>.<offset>.backup) is checked in the archiving
    // test below: without archiving, pg_backup_stop deletes it from pg_wal at once.
    expect(stop.backupHistoryFile).toMatch(new RegExp(`^${start.startWalFile}\\.[0-9A-F]{8}\\.backup$`));
    expect(fs.existsSync(path.join(main.dataDir, 'pg_wal', stop.backupHistoryFile!))).toBe(false);
    expect(stop.stopTimeline).toBe(1);
    // The server switched to a new segment at stop: the current insert position is past stopWalFile.
    const current = await main.psql('select pg_walfile_name(pg_current_wal_insert_lsn())');
    expect(current > stop.stopWalFile).toBe(true);
    expect(notices).toEqual([]);
  });

  test('stopWalFileName agrees with pg_walfile_name(), also exactly on segment boundaries', async () => {
    const lsns = ['0/1', '0/FFFFFF', '0/1000000', '0/1000001', '0/3000000', '0/2635208', '1/0', '1/1', 'A/FF000000', 'A/FF000001'];
    const out = await main.psql(`select string_agg(pg_walfile_name(l::pg_lsn), ',' order by n) from unnest(array['${lsns.join("','")}']) with ordinality as u(l, n)`);
    expect(lsns.map((l) => stopWalFileName(l, 1))).toEqual(out.split(','));
  });

  test('with a tablespace, tablespace_map comes back byte for byte', async () => {
    const tsDir = await reg.tempDir('tblspc one', { forPostgres: true });
    await main.psql(`create tablespace ts_one location '${tsDir}'`);
    try {
      await main.psql('create table in_ts (x int) tablespace ts_one; insert into in_ts select generate_series(1, 1000)');
      const oid = await main.psql("select oid from pg_tablespace where spcname = 'ts_one'");
      const s = await open(main);
      await startBackup(s, { label: 'with tablespace', fast: true });
      const stop = await stopBackup(s, { waitForArchive: false });
      expect(stop.tablespaceMap).toBeInstanceOf(Buffer);
      expect(stop.tablespaceMap!.toString('utf8')).toBe(`${oid} ${tsDir}\n`);
    } finally {
      await main.psql('drop table if exists in_ts; drop tablespace if exists ts_one');
    }
  });

  test('abort: closing the session ends backup mode; the backend is gone and a new backup starts and stops', async () => {
    const s = await open(main);
    const logBefore = main.log().length;
    await startBackup(s, { label: 'to be aborted', fast: true });
    // A second start in the same session is refused by the server.
    const twice = await startBackup(s, { label: 'again', fast: true }).catch((e: Error) => e);
    expect(twice).toBeInstanceOf(PgQueryError);
    expect((twice as Error).message).toMatch(/pg_backup_start failed: a backup is already in progress in this session/);

    const r = await abortBackup(s);
    expect(r).toEqual({ ended: true, detail: `backend ${s.backendPid} has exited` });
    expect(s.closed).toBe(true);
    expect(await main.psql(`select count(*) from pg_stat_activity where pid = ${s.backendPid}`)).toBe('0');
    await waitFor('the abort warning in the log', () => main.log().slice(logBefore).includes('aborting backup due to backend exiting before pg_backup_stop was called'));

    const s2 = await open(main);
    const start = await startBackup(s2, { label: 'after abort', fast: true });
    const stop = await stopBackup(s2, { waitForArchive: false });
    expect(stop.label.startLsn).toBe(start.startLsn);
    // abort after a finished backup (or twice) is harmless.
    expect((await abortBackup(s2)).ended).toBe(true);
    expect((await abortBackup(s2)).ended).toBe(true);
  });

  test('stop without start, and a bad label, are refused', async () => {
    const s = await open(main);
    const e = await stopBackup(s, { waitForArchive: false }).catch((x: Error) => x);
    expect(e).toBeInstanceOf(PgQueryError);
    expect((e as PgQueryError).sqlState).toBe('55000');
    expect((e as Error).message).toMatch(/pg_backup_stop failed: backup is not in progress/);
    await expect(startBackup(s, { label: 'two\nlines', fast: true })).rejects.toThrow(UsageError);
    await expect(startBackup(s, { label: 'x'.repeat(1025), fast: true })).rejects.toThrow(UsageError);
  });

  test('a role without EXECUTE on pg_backup_start gets a ConfigError saying what to grant', async () => {
    await main.psql("create role plain_user login; grant pg_read_all_settings to plain_user");
    const s = await open(main, { PGUSER: 'plain_user' });
    const e = await startBackup(s, { label: 'nope', fast: true }).catch((x: Error) => x);
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as Error).message).toMatch(/role plain_user may not call pg_backup_start: use a superuser, or GRANT EXECUTE/);
  });

  test('wal_segment_size comes back in bytes for a non-default size (initdb --wal-segsize=4)', async () => {
    const c = await reg.createCluster({ name: 'seg4', walSegSizeMb: 4 });
    await c.start();
    expect(await c.psql('show wal_segment_size')).toBe('4MB');
    const s = await open(c);
    const start = await startBackup(s, { label: 'seg4', fast: true });
    const stop = await stopBackup(s, { waitForArchive: false });
    expect(start.walSegmentSize).toBe(4 * 1024 * 1024);
    expect(stop.walSegmentSize).toBe(4 * 1024 * 1024);
    expect(stop.label.startWalFile).toBe(start.startWalFile);
    expect(stop.stopWalFile).toBe(await c.psql(`select pg_walfile_name('${stop.stopLsn}')`));
    await s.close();
    await c.stop();
  });
});

// ---------------------------------------------------------------------------------------------------

describe('server-side timeouts and WAL archiving', () => {
  let arch: Cluster;
  let archiveDir: string;

  beforeAll(async () => {
    archiveDir = await reg.tempDir('archive', { forPostgres: true });
    arch = await reg.createCluster({ name: 'arch' });
    // A slow archive_command: pg_backup_stop(wait_for_archive) takes over a second.
    arch.setConf({ archive_mode: 'on', archive_command: `sleep 1.5 && cp %p '${archiveDir}/%f'` });
    await arch.start();
  });

  test('statement_timeout / idle_session_timeout = 1s in the server config do not break a backup whose stop comes 2 s after start', async () => {
    await arch.psql(
      "alter system set statement_timeout = '1s'; alter system set idle_session_timeout = '1s'; " +
        "alter system set idle_in_transaction_session_timeout = '1s'; select pg_reload_conf()",
    );
    // The settings are in force for ordinary sessions...
    const plain = await open(arch);
    expect((await plain.query('show statement_timeout')).rows[0]).toEqual({ statement_timeout: '1s' });
    const e = await plain.query('select pg_sleep(1.5)').catch((x: Error) => x);
    expect((e as PgQueryError).sqlState).toBe('57014');
    await waitFor('idle_session_timeout to end the session', async () => (await arch.psql(`select count(*) from pg_stat_activity where pid = ${plain.backendPid}`)) === '0');
    await expect(plain.query('select 1')).rejects.toThrow(UnavailableError); // idle_session_timeout ended it

    // ...but not for the backup session.
    const notices: PgNotice[] = [];
    const s = await open(arch, {}, { onNotice: (n) => notices.push(n) });
    const start = await startBackup(s, { label: 'slow', fast: true });
    await sleep(2000);
    const t0 = Date.now();
    const stop = await stopBackup(s, { waitForArchive: true });
    const waited = Date.now() - t0;
    expect(waited).toBeGreaterThan(1000); // it really waited for the (slow) archiver
    expect(fs.existsSync(path.join(archiveDir, stop.stopWalFile))).toBe(true);
    // The backup history file PostgreSQL wrote names the same start and stop as we computed.
    const history = fs.readFileSync(path.join(archiveDir, stop.backupHistoryFile!), 'utf8');
    expect(history).toContain(`START WAL LOCATION: ${start.startLsn} (file ${start.startWalFile})\n`);
    expect(history).toContain(`STOP WAL LOCATION: ${stop.stopLsn} (file ${stop.stopWalFile})\n`);
    expect(history).toContain(`STOP TIMELINE: ${stop.stopTimeline}\n`);
    expect(history).toContain(stop.backupLabel.toString('utf8').split('\n')[0]!);
    expect(notices.map((n) => n.message)).toContain('all required WAL segments have been archived');
    expect(stop.label.startLsn).toBe(start.startLsn);
    const status = await walArchiverStatus(s);
    expect(status.archiveMode).toBe('on');
    expect(status.failedCount).toBe(0);
    expect(status.lastArchivedWal! >= stop.stopWalFile).toBe(true);
    await arch.psql('alter system reset statement_timeout; alter system reset idle_session_timeout; alter system reset idle_in_transaction_session_timeout; select pg_reload_conf()');
  });

  test('broken archiving: stop with a timeout gives up and says what pg_stat_archiver reports', async () => {
    arch.setConf({ archive_command: 'false' });
    await arch.reload();
    const s = await open(arch);
    await startBackup(s, { label: 'never archived', fast: true });
    const t0 = Date.now();
    const e = await stopBackup(s, { waitForArchive: true, timeoutMs: 4000 }).catch((x: Error) => x);
    expect(Date.now() - t0).toBeLessThan(20_000); // 5x the 4 s timeout
    expect(e).toBeInstanceOf(UnavailableError);
    expect((e as Error).message).toMatch(
      /^pg_backup_stop did not return within 4000 ms while waiting for WAL archiving and was cancelled; the backup is not usable \(pg_stat_archiver: archive_mode=on, last archived [0-9A-F.a-z]+, last failed [0-9A-F]{24} at .*, [1-9][0-9]* failed attempts\)/,
    );
    // The backup ended in the server (pg_backup_stop finished its work before waiting): the same
    // session can start another one.
    const status = await walArchiverStatus(s);
    expect(describeArchiverStatus(status)).toMatch(/last failed/);
    await startBackup(s, { label: 'again', fast: true });
    expect((await abortBackup(s)).ended).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------

describe('backup from a standby', () => {
  test('allowed: in_recovery is recorded, WAL names are computed (pg_walfile_name is refused in recovery), no archive wait', async () => {
    const standby = await reg.basebackup(main, { name: 'standby' });
    await standby.setRecovery({ primary_conninfo: `host=${main.socketDir} port=${main.port} user=postgres` }, { standby: true });
    await standby.start();
    const s = await open(standby);
    const refused = await s.query("select pg_walfile_name('0/1000000')").catch((x: Error) => x);
    expect((refused as Error).message).toMatch(/recovery is in progress/);

    const notices: PgNotice[] = [];
    const s2 = await open(standby, {}, { onNotice: (n) => notices.push(n) });
    const start = await startBackup(s2, { label: 'from standby', fast: true });
    expect(start).toMatchObject({ inRecovery: true, timeline: 1, dataDirectory: standby.dataDir });
    await main.psql('create table on_primary as select generate_series(1, 10000) g; checkpoint');
    const written = await main.psql('select pg_current_wal_lsn()');
    await waitFor('the standby to replay the new table', async () => (await standby.psql(`select pg_last_wal_replay_lsn() >= '${written}'::pg_lsn`)) === 't');
    const stop = await stopBackup(s2, { waitForArchive: true });
    expect(stop.inRecovery).toBe(true);
    expect(stop.backupHistoryFile).toBeUndefined();
    expect(stop.label).toMatchObject({ backupFrom: 'standby', fromStandby: true, startLsn: start.startLsn, startWalFile: start.startWalFile, startTimeline: 1 });
    expect(parseLsn(stop.stopLsn)).toBeGreaterThanOrEqual(parseLsn(start.startLsn));
    expect(stop.stopTimeline).toBe(1);
    expect(stop.stopWalFile).toBe(stopWalFileName(stop.stopLsn, 1));
    // The same name the primary gives for that LSN.
    expect(stop.stopWalFile).toBe(await main.psql(`select pg_walfile_name('${stop.stopLsn}')`));
    // A standby without archive_mode=always does not wait for archiving, even when asked to.
    expect(notices.map((n) => n.message)).toContainEqual(expect.stringMatching(/WAL archiving is not enabled/));
    await standby.stop();
  });
});
