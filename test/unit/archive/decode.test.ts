/**
 * The one read path (archive/decode.ts) and the one write path (archive/encode.ts), and the callers
 * that share them: wal-fetch's retries under the command's budget, and its temp-file cleanup.
 */
import { mkdtempSync, readdirSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { decodeObject } from '../../../src/archive/decode';
import { encodeTo } from '../../../src/archive/encode';
import { readPart } from '../../../src/archive/parts';
import { readWalObject } from '../../../src/archive/walRead';
import { ConfigError, CryptoError, IntegrityError, UnavailableError } from '../../../src/errors';
import { walFetch } from '../../../src/ops/walFetch';
import { removeStaleTempFiles, tempName } from '../../../src/ops/walFetchTemp';
import { walPush } from '../../../src/ops/walPush';
import { MemoryStorage } from '../../../src/storage/memory';
import type { StoredObject } from '../../../src/storage/storage';
import { RetryBudget } from '../../../src/util/retryBudget';
import { readAll } from '../../../src/util/streams';
import { testDeps } from '../../helpers/deps';
import { fakeSegment } from '../../helpers/wal';

const SEG1 = '000000010000000000000001';
const KEY1 = `walts_v1/wal/0000000100000000/${SEG1}.lz4`;
const silentLog = { info: () => {}, debug: () => {} };

function pgdata(): string {
  const dir = mkdtempSync(join(tmpdir(), 'walts-decode-'));
  mkdirSync(join(dir, 'pg_wal'));
  return dir;
}

async function lz4Object(plain: Buffer, key = 'k.lz4'): Promise<{ data: Buffer; obj: (body?: Readable) => StoredObject }> {
  const deps = testDeps(new MemoryStorage());
  let data: Buffer = Buffer.alloc(0);
  await encodeTo(deps.codecs, Readable.from([plain]), async (s) => {
    data = await readAll(s);
  });
  return { data, obj: (body = Readable.from([data])) => ({ key, size: data.length, metadata: {}, body }) };
}

/** A fake clock for a budget: waits advance it, so a deadline is spent without waiting. */
function fakeBudget(deadlineMs: number) {
  let t = 0;
  return new RetryBudget({ deadlineMs, window: 'command', clock: { now: () => t, sleep: async (ms) => void (t += ms), random: () => 0.5 } });
}

describe('decodeObject: one classification for every reader', () => {
  const deps = testDeps(new MemoryStorage());
  const plain = Buffer.alloc(300_000, 7);

  it('decodes, counting and hashing stored and plain bytes', async () => {
    const { obj, data } = await lz4Object(plain);
    const sink = new PassThrough();
    const out = readAll(sink);
    const d = await decodeObject(deps, obj(), ['lz4'], sink, { headBytes: 4 });
    expect((await out).equals(plain)).toBe(true);
    expect(d).toMatchObject({ storedBytes: data.length, plainBytes: plain.length, head: plain.subarray(0, 4) });
  });

  it('a body that breaks mid-stream is a transient UnavailableError (worth another attempt)', async () => {
    const { obj, data } = await lz4Object(plain);
    const body = new Readable({ read() {} });
    body.push(data.subarray(0, 10));
    setImmediate(() => body.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })));
    const err = await decodeObject(deps, obj(body), ['lz4'], new PassThrough().resume()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as UnavailableError).transient).toBe(true);
    expect((err as Error).message).toMatch(/^k\.lz4: read failed after 10 of \d+ bytes/);
  });

  it('a body that ends before the announced size is a broken read, not a corrupt object', async () => {
    const { obj, data } = await lz4Object(plain);
    const err = await decodeObject(deps, obj(Readable.from([data.subarray(0, 100)])), ['lz4'], new PassThrough().resume()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as UnavailableError).transient).toBe(true);
    expect((err as Error).message).toMatch(/the download broke off after 100 of/);
  });

  it('content the decoder rejects is an IntegrityError naming the key', async () => {
    const garbage = Buffer.alloc(5000, 0x41);
    const obj: StoredObject = { key: 'wal/x.lz4', size: garbage.length, metadata: {}, body: Readable.from([garbage]) };
    const err = await decodeObject(deps, obj, ['lz4'], new PassThrough().resume()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as Error).message).toMatch(/^wal\/x\.lz4: cannot decode/);
  });

  it('a full disk under the consumer is said as such, and is not transient', async () => {
    const { obj } = await lz4Object(plain);
    const full = new Writable({ write: (_c, _e, cb) => cb(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' })) });
    const err = await decodeObject(deps, obj(), ['lz4'], full).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as UnavailableError).transient).toBe(false);
    expect((err as Error).message).toMatch(/the disk is full \(ENOSPC\)/);
  });

  it('a missing private key (ConfigError) and decryption failures (CryptoError) keep their class', async () => {
    const { obj } = await lz4Object(plain, 'k.pgp');
    const noKey = await decodeObject(deps, obj(), ['pgp'], new PassThrough().resume()).catch((e: unknown) => e);
    expect(noKey).toBeInstanceOf(ConfigError);
    const consumerCrypto = await decodeObject(deps, (await lz4Object(plain)).obj(), ['lz4'], async () => {
      throw new CryptoError('bad signature');
    }).catch((e: unknown) => e);
    expect(consumerCrypto).toBeInstanceOf(CryptoError);
    expect((consumerCrypto as Error).message).toBe('k.lz4: bad signature');
  });

  it('the caller aborting passes through as AbortError', async () => {
    const { obj } = await lz4Object(plain);
    const controller = new AbortController();
    controller.abort();
    await expect(decodeObject(deps, obj(), ['lz4'], new PassThrough().resume(), { signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('backup parts and WAL reads get the same classification (a full disk under a part is not "damaged")', async () => {
    const store = new MemoryStorage();
    const d = testDeps(store);
    const dir = pgdata();
    writeFileSync(join(dir, 'pg_wal', SEG1), fakeSegment(SEG1));
    await walPush(d, { path: `pg_wal/${SEG1}`, cwd: dir });
    const stored = store.objects.get(KEY1)!;
    const part = { key: KEY1, stored_size: stored.data.length, size: fakeSegment(SEG1).length, sha256: 'x' };
    const enospc = Object.assign(new Error('no space'), { code: 'ENOSPC', syscall: 'write' });
    const partErr = await readPart(d, part, undefined, async (s) => {
      for await (const _ of s) throw enospc;
    }).catch((e: unknown) => e);
    expect(partErr).toMatchObject({ kind: 'unavailable', transient: false, message: expect.stringMatching(/disk is full/) });
    stored.data[stored.data.length - 20]! ^= 0xff; // corrupt the lz4 frame
    const walErr = await readWalObject(d, KEY1, false).catch((e: unknown) => e);
    expect(walErr).toBeInstanceOf(IntegrityError);
    expect((walErr as Error).message).toContain(KEY1);
  });
});

describe('wal-fetch under the command budget', () => {
  async function archived() {
    const store = new MemoryStorage();
    const dir = pgdata();
    writeFileSync(join(dir, 'pg_wal', SEG1), fakeSegment(SEG1));
    await walPush(testDeps(store), { path: `pg_wal/${SEG1}`, cwd: dir });
    return store;
  }

  it('re-fetches a download that broke mid-stream, within the same budget', async () => {
    const store = await archived();
    let gets = 0;
    const get = store.get.bind(store);
    store.get = async (key: string) => {
      const obj = await get(key);
      if (++gets > 2) return obj;
      const body = new Readable({ read() {} });
      setImmediate(() => body.destroy(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })));
      return { ...obj, body };
    };
    const deps = { ...testDeps(store), retry: fakeBudget(10_000) };
    const dest = pgdata();
    await walFetch(deps, { name: SEG1, dest: 'pg_wal/RECOVERYXLOG', cwd: dest });
    expect(gets).toBe(3);
    expect(readdirSync(join(dest, 'pg_wal'))).toEqual(['RECOVERYXLOG']);
  });

  it('stops at the deadline when every download breaks', async () => {
    const store = await archived();
    let gets = 0;
    const get = store.get.bind(store);
    store.get = async (key: string) => {
      gets++;
      const obj = await get(key);
      const body = new Readable({ read() {} });
      setImmediate(() => body.destroy(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })));
      return { ...obj, body };
    };
    const budget = fakeBudget(10_000);
    const err = await walFetch({ ...testDeps(store), retry: budget }, { name: SEG1, dest: 'pg_wal/X', cwd: pgdata() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect(budget.elapsedMs()).toBe(10_000);
    expect(gets).toBeGreaterThan(2);
  });

  it('reads an object that fails verification once more, not until the deadline', async () => {
    const store = await archived();
    const key = [...store.objects.keys()].find((k) => k.includes(SEG1))!;
    const obj = store.objects.get(key)!;
    obj.data[obj.data.length - 20]! ^= 0xff; // corrupt: the lz4 checksum or the recorded digest fails
    let gets = 0;
    const get = store.get.bind(store);
    store.get = async (k: string) => {
      gets++;
      return get(k);
    };
    const budget = fakeBudget(10_000);
    const err = await walFetch({ ...testDeps(store), retry: budget }, { name: SEG1, dest: 'pg_wal/X', cwd: pgdata() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect(gets).toBe(2);
  });

  it('does not retry what retrying cannot change (one attempt)', async () => {
    const store = await archived();
    let gets = 0;
    store.get = async () => {
      gets++;
      throw new ConfigError('s3://b/p: get k: AccessDenied 403: access refused');
    };
    const err = await walFetch({ ...testDeps(store), retry: fakeBudget(10_000) }, { name: SEG1, dest: 'pg_wal/X', cwd: pgdata() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(gets).toBe(1);
  });
});

describe('wal-fetch temp files', () => {
  it('carry the pid; the next fetch removes those of dead processes only', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'walts-tmp-'));
    const dead = tempName('RECOVERYXLOG', 'abcd1234', 999_999);
    const live = tempName('RECOVERYXLOG', 'abcd1235', 4242);
    const old = '.RECOVERYXLOG.walts-0123abcd.tmp'; // an older walts: no pid, removed after a day
    const fresh = '.00000002.history.walts-89abcdef.tmp';
    const other = 'RECOVERYXLOG.tmp';
    for (const f of [dead, live, old, fresh, other]) writeFileSync(join(dir, f), 'x');
    const { utimesSync } = await import('node:fs');
    utimesSync(join(dir, old), new Date(0), new Date(0));
    const removed = await removeStaleTempFiles(dir, silentLog, { exists: (pid) => pid === 4242 });
    expect(removed.sort()).toEqual([dead, old].sort());
    expect(readdirSync(dir).sort()).toEqual([live, fresh, other].sort());
  });
});

describe('decodeObject: an AbortError from a stage', () => {
  it('is looked through to its cause (a full disk is not "The operation was aborted")', async () => {
    const deps = testDeps(new MemoryStorage());
    const { obj } = await lz4Object(Buffer.alloc(1000, 1));
    const enospc = Object.assign(new Error('no space'), { code: 'ENOSPC', syscall: 'write' });
    const err = await decodeObject(deps, obj(), ['lz4'], async (s) => {
      for await (const _ of s) throw Object.assign(new Error('The operation was aborted'), { name: 'AbortError', cause: enospc });
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'unavailable', transient: false, message: expect.stringMatching(/the disk is full \(ENOSPC\)/) });
  });
});
