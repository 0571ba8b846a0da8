/**
 * Acceptance: PostgreSQL 15 archives through `walts wal-push %p` under a pgbench load; a copy made
 * with pg_basebackup (no WAL) recovers through `walts wal-fetch %f %p` to the end of the archive and
 * holds exactly the rows the primary had at its last archived segment. Encrypted, for a directory
 * store and for an S3 server.
 */
import { readFileSync } from 'node:fs';
import { makeGpgKeys, type GpgKeys } from '../helpers/gpg';
import { trackClusters } from '../helpers/pg';
import { startStore, waltsCommand, type StoreKind, type TestStore } from '../helpers/stores';

const STATE_SQL = `select (select count(*) from pgbench_accounts) || ',' || (select sum(abalance) from pgbench_accounts) || ',' || (select count(*) from pgbench_history) || ',' || (select count(*) from marker)`;

describe.each<StoreKind>(['file', 's3'])('archive round trip through real PostgreSQL 15 (%s store, encrypted)', (kind) => {
  const reg = trackClusters();
  let store: TestStore;
  let keys: GpgKeys;

  beforeAll(async () => {
    keys = await makeGpgKeys({ passphrase: 'correct horse', algo: 'ed25519' });
    store = await startStore(kind, reg);
  });
  afterAll(async () => {
    await reg.cleanupAll();
    await store?.stop();
    await keys?.cleanup();
  });

  it('replays to the end of the archive with the primary’s rows, and no archive failures', async () => {
    const pushEnv = { ...store.env, WALTS_PGP_PUBLIC_KEY: keys.publicKeyPath, WALTS_RETRY_DEADLINE: '20' };
    const a = await reg.createCluster({
      name: 'a',
      dataChecksums: true,
      conf: { archive_mode: 'on', archive_command: waltsCommand('wal-push %p') },
      env: pushEnv,
    });
    await a.start();
    await a.pgbench(['-i', '-s', '4', '-q']);
    await a.psql('create table marker (id int primary key, at timestamptz default now())');
    const b = await reg.basebackup(a, { name: 'b' });

    // Load while archiving: several segments' worth of WAL written by concurrent clients.
    const bench = await a.pgbench(['-c', '2', '-j', '2', '-T', '6', '-n']);
    expect(bench.code).toBe(0);
    await a.psql('insert into marker (id) select generate_series(1, 1000)');
    const state = await a.psql(STATE_SQL);
    const lastSegment = await a.switchWalAndWaitArchived();
    const archiver = await a.psql('select archived_count || \',\' || failed_count from pg_stat_archiver');
    const [archived, failed] = archiver.split(',').map(Number);
    expect(failed).toBe(0);
    expect(archived).toBeGreaterThanOrEqual(4);
    // One JSON log line per push that ran in Node, with name and byte counts; the calls for segments
    // a look-ahead already pushed are answered by bin/walts without Node, silently, and are named in
    // the line of the push that recorded them.
    const pushLines = a.log().split('\n').filter((l) => l.includes('"wal-push done"'));
    const recordedAhead = pushLines.flatMap((l) => (JSON.parse(l) as { lookahead?: { recorded: string[] } }).lookahead?.recorded ?? []);
    expect(pushLines.length + recordedAhead.length).toBeGreaterThanOrEqual(archived ?? 0);
    expect(JSON.parse(pushLines[0] ?? '{}')).toMatchObject({ cmd: 'wal-push', outcome: 'uploaded', bytes_in: 16 * 1024 * 1024 });
    // Nothing else from walts at the default level: no SDK chatter in PostgreSQL's log.
    expect(a.log()).not.toMatch(/NodeVersionSupportWarning|AWS SDK for JavaScript/);

    b.env = { ...store.env, WALTS_PGP_PRIVATE_KEY: keys.privateKeyPath, WALTS_PGP_PASSPHRASE_FILE: keys.passphraseFile ?? '' };
    await b.setRecovery({ restore_command: waltsCommand('wal-fetch %f %p') });
    await b.start();
    await b.waitForRecoveryEnd(120_000);
    expect(await b.psql(STATE_SQL)).toBe(state);
    const log = b.log();
    expect(log).toContain(`restored log file "${lastSegment}" from archive`);
    expect(log).not.toMatch(/FATAL|PANIC/);
    // The archive holds what walts says it holds: an OpenPGP message per segment, never plaintext.
    const fetchLines = log.split('\n').filter((l) => l.includes('"wal-fetch done"'));
    expect(fetchLines.length).toBeGreaterThan(0);
    expect(JSON.parse(fetchLines[0] ?? '{}')).toMatchObject({ digest_verified: true });
    expect(readFileSync(keys.publicKeyPath, 'utf8')).toContain('BEGIN PGP PUBLIC KEY');
  });
});
