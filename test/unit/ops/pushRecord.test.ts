/**
 * Push records (src/ops/pushRecord.ts): the format bin/walts reads with `read` and compares with one
 * `stat`, the binding to the file and the store, the freshness margin (with injected clock values),
 * durability leftovers and the sweep.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkRecordSync,
  formatIdentity,
  formatRecord,
  FRESHNESS_MARGIN_MS,
  identityOf,
  parseRecord,
  pushRecordDir,
  sameStore,
  settledBeforeStat,
  sweepRecords,
  writeRecord,
  type FileIdentity,
  type PushRecord,
} from '../../../src/ops/pushRecord';

const SEG = '000000010000000000000002';
const SHA = 'ab'.repeat(32);
const STORE = { store: 's3://bucket/cluster-a', endpoint: 'http://127.0.0.1:9000' };

function walDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'walts-record-'));
  mkdirSync(join(dir, 'pg_wal', 'archive_status'), { recursive: true });
  return join(dir, 'pg_wal');
}

const identity = (path: string): FileIdentity => identityOf(statSync(path, { bigint: true }));

async function recorded(dir: string, content = 'segment bytes'): Promise<{ path: string; records: string }> {
  const path = join(dir, SEG);
  writeFileSync(path, content);
  const records = pushRecordDir(undefined, path);
  await writeRecord(records, SEG, { identity: identity(path), sha256: SHA, store: STORE });
  return { path, records };
}

describe('push record format', () => {
  it('prints the identity exactly as stat -L -c "%d %i %s %.9Y %.9Z" does (what bin/walts compares)', () => {
    const path = join(walDir(), SEG);
    writeFileSync(path, 'x'.repeat(1234));
    const fromStat = execFileSync('stat', ['-L', '-c', '%d %i %s %.9Y %.9Z', '--', path], { encoding: 'utf8' }).trim();
    expect(formatIdentity(identity(path))).toBe(fromStat);
  });

  it('is three lines that parse back to the same record, and nothing else parses', () => {
    const id: FileIdentity = { dev: 65024n, ino: 42n, size: 16777216n, mtimeNs: 1_700_000_000_000_000_001n, ctimeNs: 1_700_000_000_123_456_789n };
    const record: PushRecord = { identity: id, sha256: SHA, store: STORE };
    const text = formatRecord(record);
    expect(text).toBe(`walts-push-v1 65024 42 16777216 1700000000.000000001 1700000000.123456789 ${SHA}\ns3://bucket/cluster-a\nhttp://127.0.0.1:9000\n`);
    expect(parseRecord(text)).toEqual(record);
    expect(parseRecord(text.replace('walts-push-v1', 'walts-push-v2'))).toBeUndefined();
    expect(parseRecord(text.slice(0, -1))).toBeUndefined(); // cut short: no final newline
    expect(parseRecord(text + 'extra\n')).toBeUndefined();
    expect(parseRecord(text.replace(SHA, SHA.slice(1)))).toBeUndefined();
    expect(parseRecord(text.replace('1700000000.000000001', '1700000000.1'))).toBeUndefined();
    expect(() => formatRecord({ ...record, store: { store: 's3://a\nb', endpoint: '' } })).toThrow(RangeError);
  });

  it('binds a store by its string and endpoint; an empty store string never matches', () => {
    expect(sameStore(STORE, { ...STORE })).toBe(true);
    expect(sameStore(STORE, { ...STORE, endpoint: '' })).toBe(false);
    expect(sameStore(STORE, { ...STORE, store: 's3://bucket/cluster-b' })).toBe(false);
    expect(sameStore({ store: '', endpoint: '' }, { store: '', endpoint: '' })).toBe(false);
  });

  it('defaults its directory to walts_spool beside the WAL file, or WALTS_SPOOL_DIR', () => {
    expect(pushRecordDir(undefined, '/data/pg_wal/' + SEG)).toBe('/data/pg_wal/walts_spool/push');
    expect(pushRecordDir('/var/spool/walts', '/data/pg_wal/' + SEG)).toBe('/var/spool/walts/push');
  });
});

describe('freshness margin (injected clock)', () => {
  const ctimeMs = 1_700_000_000_000;
  const id: FileIdentity = { dev: 1n, ino: 2n, size: 3n, mtimeNs: BigInt(ctimeMs) * 1_000_000n, ctimeNs: BigInt(ctimeMs) * 1_000_000n + 500n };

  it('records only a file whose ctime is older than the first stat by more than the margin', () => {
    expect(settledBeforeStat(id, ctimeMs + FRESHNESS_MARGIN_MS + 1)).toBe(true);
    expect(settledBeforeStat(id, ctimeMs + FRESHNESS_MARGIN_MS)).toBe(false); // ctime 500 ns past the bound
    expect(settledBeforeStat(id, ctimeMs + 1)).toBe(false);
    expect(settledBeforeStat(id, ctimeMs - 1000)).toBe(false); // clock behind the file: never
    expect(settledBeforeStat(id, ctimeMs + 10, 5)).toBe(true);
    const exact = { ...id, ctimeNs: BigInt(ctimeMs) * 1_000_000n };
    expect(settledBeforeStat(exact, ctimeMs + FRESHNESS_MARGIN_MS)).toBe(false); // exactly the margin: not older by it
    expect(settledBeforeStat(exact, ctimeMs + FRESHNESS_MARGIN_MS + 1)).toBe(true);
  });
});

describe('checkRecordSync: what a record proves', () => {
  it('a record for this file and store is valid', async () => {
    const { path, records } = await recorded(walDir());
    expect(checkRecordSync(records, SEG, path, STORE)).toBe('valid');
    expect(readdirSync(records)).toEqual([SEG]); // no temp file left behind
    expect(statSync(join(records, SEG)).mode & 0o777).toBe(0o600);
  });

  it('is not honoured after the content changed, even with the mtime put back (and is deleted)', async () => {
    const { path, records } = await recorded(walDir(), 'aaaa');
    const before = identity(path);
    writeFileSync(path, 'bbbb'); // same size
    // Put the mtime back to the nanosecond (utimes can; nothing can put back the ctime).
    execFileSync('touch', ['-m', '-d', `@${formatIdentity(before).split(' ')[3]}`, path]);
    expect(identity(path)).toMatchObject({ ino: before.ino, size: before.size, mtimeNs: before.mtimeNs });
    expect(checkRecordSync(records, SEG, path, STORE)).toBe('stale');
    expect(existsSync(join(records, SEG))).toBe(false);
  });

  it('is not honoured for another store or endpoint', async () => {
    const { path, records } = await recorded(walDir());
    expect(checkRecordSync(records, SEG, path, { ...STORE, endpoint: 'http://127.0.0.1:9001' })).toBe('stale');
    const again = await recorded(walDir());
    expect(checkRecordSync(again.records, SEG, again.path, { ...STORE, store: 's3://bucket/cluster-b' })).toBe('stale');
  });

  it('is not honoured for a file renamed into the name (a recycled segment), nor for a vanished one', async () => {
    const dir = walDir();
    const { path, records } = await recorded(dir, 'same');
    writeFileSync(join(dir, 'other'), 'same');
    renameSync(join(dir, 'other'), path);
    expect(checkRecordSync(records, SEG, path, STORE)).toBe('stale');
    const gone = await recorded(walDir());
    renameSync(gone.path, gone.path + '.moved');
    expect(checkRecordSync(gone.records, SEG, gone.path, STORE)).toBe('stale');
  });

  it('a record that does not parse is deleted; no record is absent', async () => {
    const { path, records } = await recorded(walDir());
    writeFileSync(join(records, SEG), readFileSync(join(records, SEG), 'utf8').replace('v1', 'v0'));
    expect(checkRecordSync(records, SEG, path, STORE)).toBe('stale');
    expect(checkRecordSync(records, SEG, path, STORE)).toBe('absent');
  });
});

describe('sweepRecords', () => {
  it('removes records whose WAL file is gone or changed, and old temp files; keeps valid ones and young temps', async () => {
    const dir = walDir();
    const { records } = await recorded(dir);
    const other = '000000010000000000000003';
    writeFileSync(join(dir, other), 'x');
    await writeRecord(records, other, { identity: identity(join(dir, other)), sha256: SHA, store: STORE });
    const gone = '000000010000000000000004';
    writeFileSync(join(dir, gone), 'x');
    await writeRecord(records, gone, { identity: identity(join(dir, gone)), sha256: SHA, store: STORE });
    renameSync(join(dir, gone), join(dir, '000000010000000000000009')); // recycled by PostgreSQL
    writeFileSync(join(dir, other), 'changed');
    writeFileSync(join(records, `.${SEG}.tmp-1-aa`), 'partial');
    writeFileSync(join(records, 'README'), 'not ours');
    const now = Date.now();
    expect(await sweepRecords(records, dir, now)).toBe(2);
    expect(readdirSync(records).sort()).toEqual([`.${SEG}.tmp-1-aa`, SEG, 'README']);
    expect(await sweepRecords(records, dir, now + 11 * 60_000)).toBe(1);
    expect(readdirSync(records).sort()).toEqual([SEG, 'README']);
  });
});
