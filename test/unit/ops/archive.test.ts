/**
 * The archive must exist before "not found" can be said (issue 7 §1): every command opens it first,
 * `init` creates it deliberately, adopts archives made before init existed, and records encryption.
 * In-process against the memory store; the CLI and real stores are covered in
 * test/integration/archive.test.ts.
 */
import { mkdirSync, mkdtempSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArchiveRecord, readArchiveRecord } from '../../../src/archive/archive';
import { ARCHIVE_KEY, CLUSTER_KEY } from '../../../src/archive/layout';
import { ConfigError, IntegrityError, NotFoundError } from '../../../src/errors';
import { exitCodeFor } from '../../../src/exitCodes';
import { backupList, backupShow } from '../../../src/ops/backupList';
import { deleteOp } from '../../../src/ops/delete';
import { init } from '../../../src/ops/init';
import { verify } from '../../../src/ops/verify';
import { walFetch } from '../../../src/ops/walFetch';
import { walPush } from '../../../src/ops/walPush';
import { parseControlFile } from '../../../src/postgres/controlFile';
import { MemoryStorage } from '../../../src/storage/memory';
import { countingStore, testDeps } from '../../helpers/deps';
import { fakeSegment } from '../../helpers/wal';

const SEG1 = '000000010000000000000001';
const SEG2 = '000000010000000000000002';
const FPR = 'a'.repeat(40);

function pgdata(): string {
  const dir = mkdtempSync(join(tmpdir(), 'walts-archive-'));
  mkdirSync(join(dir, 'pg_wal'));
  writeFileSync(join(dir, 'pg_wal', SEG1), fakeSegment(SEG1));
  return dir;
}

const fetchArgs = (name: string, cwd: string) => ({ name, dest: 'pg_wal/RECOVERYXLOG', cwd, retryDeadlineMs: 1000, sleep: async () => {} });
const none = { method: 'none' } as const;

describe('a store without the archive record is refused by every command', () => {
  it('wal-push: configuration error (exit 2), nothing written', async () => {
    const store = countingStore();
    const err = await walPush(testDeps(store, { archive: false }), { path: `pg_wal/${SEG1}`, cwd: pgdata() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/WALTS_STORE .* holds no walts archive .*walts init/);
    expect(exitCodeFor('wal-push', err)).toBe(2);
    expect(store.puts).toEqual([]);
  });

  it('wal-fetch of a name it does not have: a hard error (255), not "not found", and nothing written', async () => {
    const dir = pgdata();
    const err = await walFetch(testDeps(new MemoryStorage(), { archive: false }), fetchArgs(SEG2, dir)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(exitCodeFor('wal-fetch', err)).toBe(255);
    expect(existsSync(join(dir, 'pg_wal/RECOVERYXLOG'))).toBe(false);
  });

  it('backup-list, backup-show, delete and verify fail with a configuration error', async () => {
    const deps = () => testDeps(new MemoryStorage(), { archive: false });
    await expect(backupList(deps())).rejects.toBeInstanceOf(ConfigError);
    await expect(backupShow(deps(), 'LATEST')).rejects.toBeInstanceOf(ConfigError);
    await expect(deleteOp(deps(), { rule: { kind: 'everything' }, confirm: true, leftoverAgeMs: 0 })).rejects.toBeInstanceOf(ConfigError);
    await expect(verify(deps(), { deep: false, canDecrypt: false, leftoverAgeMs: 0, parallel: 1 })).rejects.toBeInstanceOf(ConfigError);
  });

  it('inside an archive, a missing name is "not found" (exit 1)', async () => {
    const err = await walFetch(testDeps(new MemoryStorage()), fetchArgs(SEG2, pgdata())).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect(exitCodeFor('wal-fetch', err)).toBe(1);
  });

  it('an archive made before walts init (cluster.json only) keeps working, and init adopts it', async () => {
    const store = new MemoryStorage();
    const dir = pgdata();
    // What the previous version did: the first wal-push claimed the store.
    await walPush(testDeps(store), { path: `pg_wal/${SEG1}`, cwd: dir });
    store.objects.delete(ARCHIVE_KEY);
    expect(store.objects.has(CLUSTER_KEY)).toBe(true);
    await expect(walFetch(testDeps(store, { archive: false }), fetchArgs(SEG2, dir))).rejects.toBeInstanceOf(NotFoundError);
    await walFetch(testDeps(store, { archive: false }), fetchArgs(SEG1, dir));
    expect((await walPush(testDeps(store, { archive: false }), { path: `pg_wal/${SEG1}`, cwd: dir })).outcome).toBe('already-archived');
    const r = await init(testDeps(store, { archive: false }), { encryption: none });
    expect(r.outcome).toBe('adopted');
    expect(await readArchiveRecord(store)).toMatchObject({ format: 1, encryption: none });
  });
});

describe('init', () => {
  it('creates the record once; a second init is a no-op that changes nothing', async () => {
    const store = countingStore();
    const deps = testDeps(store, { archive: false });
    expect((await init(deps, { encryption: none })).outcome).toBe('created');
    const first = store.objects.get(ARCHIVE_KEY)!.data.toString();
    expect(JSON.parse(first)).toEqual({ format: 1, created_at: '2026-11-21T12:00:00.000Z', created_by: 'test-host', walts_version: 'test', encryption: none });
    const again = await init(deps, { encryption: none });
    expect(again).toMatchObject({ outcome: 'exists', changes: [] });
    expect(store.objects.get(ARCHIVE_KEY)!.data.toString()).toBe(first);
    expect(store.puts).toEqual([ARCHIVE_KEY]);
  });

  it('with a public key on an unencrypted archive, records that it is now encrypted; never back to none', async () => {
    const store = new MemoryStorage();
    const deps = testDeps(store, { archive: false });
    await init(deps, { encryption: none });
    const r = await init(deps, { encryption: { method: 'openpgp', fingerprints: [FPR] } });
    expect(r.changes).toEqual([expect.stringMatching(/encrypted/)]);
    expect(await readArchiveRecord(store)).toMatchObject({ encryption: { method: 'openpgp', fingerprints: [FPR] }, encrypted_since: '2026-11-21T12:00:00.000Z' });
    expect((await init(deps, { encryption: none })).changes).toEqual([]);
    expect((await readArchiveRecord(store))?.encryption.method).toBe('openpgp');
  });

  it('with a cluster identity, claims the archive; another cluster is refused', async () => {
    const store = new MemoryStorage();
    const deps = testDeps(store, { archive: false });
    const cluster = { systemIdentifier: '7301234567890123456', pgMajor: 15, magic: 0xd110, segmentSize: 1 << 20 };
    expect((await init(deps, { encryption: none, cluster })).changes).toEqual([expect.stringMatching(/claimed for database system 7301234567890123456/)]);
    await expect(init(deps, { encryption: none, cluster: { ...cluster, systemIdentifier: '1' } })).rejects.toBeInstanceOf(IntegrityError);
    // The segment of that cluster is accepted by wal-push (fakeSegment uses that system identifier).
    expect((await walPush(deps, { path: `pg_wal/${SEG1}`, cwd: pgdata() })).outcome).toBe('uploaded');
  });
});

describe('an encrypted archive', () => {
  it('refuses wal-push without WALTS_PGP_PUBLIC_KEY before uploading anything (exit 2)', async () => {
    const store = countingStore();
    const deps = testDeps(store, { archive: { method: 'openpgp', fingerprints: [FPR] } });
    const err = await walPush(deps, { path: `pg_wal/${SEG1}`, cwd: pgdata() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain('WALTS_PGP_PUBLIC_KEY');
    expect(exitCodeFor('wal-push', err)).toBe(2);
    expect(store.puts).toEqual([]);
  });

  it('verify --deep without a private key: one configuration error up front, nothing downloaded', async () => {
    const store = new MemoryStorage();
    const deps = testDeps(store, { archive: { method: 'openpgp', fingerprints: [FPR] } });
    for (let i = 0; i < 5; i++) store.objects.set(`walts_v1/wal/0000000100000000/00000001000000000000000${i}.lz4.pgp`, { data: Buffer.from('x'), metadata: {}, lastModified: new Date() });
    const gets = jest.spyOn(store, 'get');
    const err = await verify(deps, { deep: true, canDecrypt: false, leftoverAgeMs: 0, parallel: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain('WALTS_PGP_PRIVATE_KEY');
    expect(exitCodeFor('verify', err)).toBe(2);
    expect(gets.mock.calls.map((c) => c[0]).filter((k) => k.includes('/wal/'))).toEqual([]);
  });

  it('verify --deep without a private key on an archive with encrypted objects but no record of it (older archive) fails the same way', async () => {
    const store = new MemoryStorage();
    store.objects.set(CLUSTER_KEY, { data: Buffer.from(JSON.stringify({ format: 1, system_identifier: '1', wal_page_magic: 0xd110, wal_segment_size: 16 << 20, created_at: 'x', created_by: 'y' })), metadata: {}, lastModified: new Date() });
    store.objects.set(`walts_v1/wal/0000000100000000/${SEG1}.lz4.pgp`, { data: Buffer.from('x'), metadata: {}, lastModified: new Date() });
    await expect(verify(testDeps(store, { archive: false }), { deep: true, canDecrypt: false, leftoverAgeMs: 0, parallel: 1 })).rejects.toBeInstanceOf(ConfigError);
  });
});

describe('verify of an archive without a complete backup', () => {
  it('is not ok', async () => {
    const report = await verify(testDeps(new MemoryStorage()), { deep: false, canDecrypt: false, leftoverAgeMs: 0, parallel: 1 });
    expect(report).toMatchObject({ ok: false, backups: [], problems: [] });
  });
});

describe('records read from the store are parsed strictly', () => {
  test.each([
    ['not an object', 'null'],
    ['unknown format', '{"format":2}'],
    ['unknown encryption', JSON.stringify({ format: 1, created_at: 'a', created_by: 'b', walts_version: 'c', encryption: { method: 'rot13' } })],
    ['bad fingerprints', JSON.stringify({ format: 1, created_at: 'a', created_by: 'b', walts_version: 'c', encryption: { method: 'openpgp', fingerprints: ['../x'] } })],
    ['bad conditional_put', JSON.stringify({ format: 1, created_at: 'a', created_by: 'b', walts_version: 'c', encryption: { method: 'none' }, conditional_put: { honoured: 'yes' } })],
  ])('archive.json: %s is refused', async (_what, text) => {
    expect(() => parseArchiveRecord(JSON.parse(text))).toThrow();
    const store = new MemoryStorage();
    store.objects.set(ARCHIVE_KEY, { data: Buffer.from(text), metadata: {}, lastModified: new Date() });
    await expect(readArchiveRecord(store)).rejects.toBeInstanceOf(IntegrityError);
  });

  it('pg_control: finds the system identifier and segment size behind the float check value', () => {
    const buf = Buffer.alloc(8192);
    buf.writeBigUInt64LE(7301234567890123456n, 0);
    buf.writeDoubleLE(1234567.0, 216);
    [8192, 131072, 8192, 64 << 20].forEach((v, i) => buf.writeUInt32LE(v, 224 + 4 * i));
    expect(parseControlFile(buf)).toEqual({ systemIdentifier: '7301234567890123456', segmentSize: 64 << 20 });
    expect(typeof parseControlFile(Buffer.alloc(8192))).toBe('string');
  });
});
