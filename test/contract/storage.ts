/**
 * The Storage contract (src/storage/storage.ts) as a test suite every store runs. `open` must return
 * an empty store each time (a fresh directory, bucket prefix or instance): tests own their stores.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { NotFoundError, ObjectExistsError } from '../../src/errors';
import type { ObjectInfo, Storage } from '../../src/storage/storage';
import { readAll } from '../../src/util/streams';

export type OpenStorage = () => Promise<{ storage: Storage; cleanup: () => Promise<void> }>;

const MiB = 1024 * 1024;
/** Per test: a store that hangs should fail its test, not the whole run's patience. */
const T = 30_000;

export interface ContractOptions {
  /**
   * The server lists a "directory" `a/` before sibling keys like `a.b` or `a-c` (s3rver walks its
   * filesystem; real S3 lists in byte order). Only the set of keys is checked then.
   */
  nestedListOrderBroken?: boolean;
}

export function describeStorage(name: string, open: OpenStorage, options: ContractOptions = {}): void {
  describe(`Storage contract: ${name}`, () => {
    const cleanups: Array<() => Promise<void>> = [];
    const fresh = async (): Promise<Storage> => {
      const { storage, cleanup } = await open();
      cleanups.push(cleanup);
      return storage;
    };
    afterEach(async () => {
      for (const c of cleanups.splice(0)) await c();
    }, T);

    it('round-trips a Buffer', async () => {
      const s = await fresh();
      const data = randomBytes(100_000);
      await s.put('rt/buffer', data);
      const obj = await s.get('rt/buffer');
      expect(obj.key).toBe('rt/buffer');
      expect(obj.size).toBe(data.length);
      expect((await readAll(obj.body)).equals(data)).toBe(true);
    }, T);

    it('round-trips a 20 MiB stream of unknown size', async () => {
      const s = await fresh();
      const src = randomStream(20 * MiB);
      await s.put('rt/stream', src.stream);
      const obj = await s.get('rt/stream');
      expect(obj.size).toBe(20 * MiB);
      expect(await digestOf(obj.body)).toEqual({ sha256: src.digest(), size: 20 * MiB });
    }, T);

    it('round-trips a stream of known size', async () => {
      const s = await fresh();
      const src = randomStream(3 * MiB + 17);
      await s.put('rt/sized', src.stream, { size: 3 * MiB + 17 });
      expect(await digestOf((await s.get('rt/sized')).body)).toEqual({ sha256: src.digest(), size: 3 * MiB + 17 });
    }, T);

    it('round-trips metadata through get and head', async () => {
      const s = await fresh();
      const metadata = { sha256: 'ab'.repeat(32), 'plain-size': '16777216', 'walts-version': '0.1.0' };
      await s.put('meta/obj', Buffer.from('hello'), { metadata });
      const obj = await s.get('meta/obj');
      obj.body.resume();
      expect(obj.metadata).toEqual(metadata);
      const info = await s.head('meta/obj');
      expect(info).toMatchObject({ key: 'meta/obj', size: 5, metadata });
      // Not toBeInstanceOf(Date): dates made by Node's fs come from another realm than jest's Date.
      expect(Object.prototype.toString.call(info?.lastModified)).toBe('[object Date]');
    }, T);

    it('head of a missing key is undefined, get is NotFoundError', async () => {
      const s = await fresh();
      expect(await s.head('missing/key')).toBeUndefined();
      await expect(s.get('missing/key')).rejects.toBeInstanceOf(NotFoundError);
    }, T);

    it('creates with ifAbsent when the key is free', async () => {
      const s = await fresh();
      await s.put('cond/new', Buffer.from('one'), { ifAbsent: true, metadata: { v: '1' } });
      expect(await s.head('cond/new')).toMatchObject({ size: 3, metadata: { v: '1' } });
    }, T);

    it('refuses ifAbsent on an existing key and keeps the original', async () => {
      const s = await fresh();
      if (s.conditionalCreate !== 'enforced') {
        // The service may ignore the condition: only the probe can say, and it must give an answer.
        expect(typeof (await s.probeConditionalCreate?.('scratch'))).toBe('boolean');
        return;
      }
      await s.put('cond/taken', Buffer.from('original'), { metadata: { v: '1' } });
      await expect(s.put('cond/taken', Buffer.from('intruder'), { ifAbsent: true, metadata: { v: '2' } })).rejects.toBeInstanceOf(ObjectExistsError);
      await expect(s.put('cond/taken', Readable.from([Buffer.from('stream')]), { ifAbsent: true })).rejects.toBeInstanceOf(ObjectExistsError);
      const obj = await s.get('cond/taken');
      expect(obj.metadata).toEqual({ v: '1' });
      expect((await readAll(obj.body)).toString()).toBe('original');
    }, T);

    it('of concurrent ifAbsent puts with different content, exactly one succeeds and the store holds its content and metadata', async () => {
      const s = await fresh();
      if (s.conditionalCreate !== 'enforced') return; // see the S3 tests for stores that may ignore the condition
      const bodies = ['alpha', 'bravo-2', 'charlie', 'delta-44'];
      const results = await Promise.allSettled(bodies.map((b, i) => s.put('race/one', Buffer.from(b), { ifAbsent: true, metadata: { writer: String(i) } })));
      const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
      expect(winners).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ObjectExistsError);
      const obj = await s.get('race/one');
      expect(obj.metadata).toEqual({ writer: String(winners[0]) });
      expect((await readAll(obj.body)).toString()).toBe(bodies[winners[0] ?? 0]);
    }, T);

    it('an overwrite of the same size never shows the old metadata with the new content', async () => {
      const s = await fresh();
      await s.put('ow/same', Buffer.from('aaaa'), { metadata: { v: 'a' } });
      await s.put('ow/same', Buffer.from('bbbb'), { metadata: { v: 'b' } });
      const obj = await s.get('ow/same');
      expect({ body: (await readAll(obj.body)).toString(), meta: obj.metadata }).toEqual({ body: 'bbbb', meta: { v: 'b' } });
    }, T);

    it('puts again into a folder whose last object was deleted', async () => {
      const s = await fresh();
      await s.put('gone/deep/a', Buffer.from('a'), { metadata: { v: '1' } });
      await s.delete(['gone/deep/a']);
      expect(await listKeys(s, '')).toEqual([]);
      await s.put('gone/deep/b', Buffer.from('b'), { ifAbsent: true, metadata: { v: '2' } });
      expect(await listKeys(s, 'gone/')).toEqual(['gone/deep/b']);
      expect((await s.head('gone/deep/b'))?.metadata).toEqual({ v: '2' });
    }, T);

    it('overwrites content and metadata without ifAbsent; no metadata drops the old', async () => {
      const s = await fresh();
      await s.put('ow/obj', Buffer.from('first'), { metadata: { a: '1' } });
      await s.put('ow/obj', Buffer.from('second!'), { metadata: { b: '2' } });
      let obj = await s.get('ow/obj');
      expect((await readAll(obj.body)).toString()).toBe('second!');
      expect(obj.metadata).toEqual({ b: '2' });
      await s.put('ow/obj', Buffer.from('third'));
      obj = await s.get('ow/obj');
      expect((await readAll(obj.body)).toString()).toBe('third');
      expect(obj.metadata).toEqual({});
    }, T);

    it('lists in lexicographic order with prefix filtering, partial names included', async () => {
      const s = await fresh();
      const dir = 'wal/0000000100000000/';
      const keys = [
        `${dir}000000010000000000000002.lz4`,
        `${dir}000000010000000000000001.partial`,
        `${dir}000000010000000000000001.lz4`,
        `${dir}00000002.history`,
        'wal/0000000100000001/000000010000000100000000.lz4',
        'walx/other',
      ];
      for (const k of keys) await s.put(k, Buffer.from(k));
      expect(await listKeys(s, `${dir}000000010000000000000001`)).toEqual([`${dir}000000010000000000000001.lz4`, `${dir}000000010000000000000001.partial`]);
      expect(await listKeys(s, dir)).toEqual([...keys.slice(0, 4)].sort());
      expect(await listKeys(s, 'wal/')).toEqual([...keys.slice(0, 5)].sort());
      expect(await listKeys(s, 'nothing/here')).toEqual([]);
      const entries = await listAll(s, `${dir}00000002`);
      expect(entries).toEqual([expect.objectContaining({ key: `${dir}00000002.history`, size: `${dir}00000002.history`.length, metadata: {} })]);
    }, T);

    it('orders nested directories as keys compare (a.b before a/x)', async () => {
      const s = await fresh();
      const keys = ['n/a/x', 'n/a0', 'n/a.b', 'n/a-c', 'n/a/b/c', 'n/ab'];
      for (const k of keys) await s.put(k, Buffer.from(k));
      if (options.nestedListOrderBroken) {
        expect((await listKeys(s, 'n/')).sort()).toEqual([...keys].sort());
      } else {
        expect(await listKeys(s, 'n/')).toEqual([...keys].sort());
        expect(await listKeys(s, 'n/a')).toEqual([...keys].sort());
      }
      expect(await listKeys(s, 'n/a/')).toEqual(['n/a/b/c', 'n/a/x']);
    }, T);

    it('lists everything with an empty prefix', async () => {
      const s = await fresh();
      const keys = ['z', 'a/b', 'm/n/o'];
      for (const k of keys) await s.put(k, Buffer.from(k), { metadata: { k: 'v' } });
      expect(await listKeys(s, '')).toEqual([...keys].sort());
    }, T);

    it('lists 1100 keys (past S3 1000-key pages) and deletes them in one call', async () => {
      const s = await fresh();
      const keys = Array.from({ length: 1100 }, (_, i) => `many/${String(i).padStart(5, '0')}`);
      await inBatches(keys, 32, (k) => s.put(k, Buffer.from(k)));
      expect(await listKeys(s, 'many/')).toEqual(keys);
      await s.delete(keys);
      expect(await listKeys(s, 'many/')).toEqual([]);
    }, T);

    it('deletes existing and missing keys alike', async () => {
      const s = await fresh();
      await s.put('del/a', Buffer.from('a'), { metadata: { x: '1' } });
      await s.put('del/b', Buffer.from('b'));
      await s.delete(['del/a', 'del/missing', 'never/there']);
      expect(await s.head('del/a')).toBeUndefined();
      await expect(s.get('del/a')).rejects.toBeInstanceOf(NotFoundError);
      expect(await listKeys(s, 'del/')).toEqual(['del/b']);
      await s.delete([]);
    }, T);

    it('rejects invalid keys with RangeError', async () => {
      const s = await fresh();
      for (const key of ['../x', '/abs', 'a//b', 'a/../b', 'x.meta.json']) {
        await expect(s.put(key, Buffer.from('x'))).rejects.toBeInstanceOf(RangeError);
        await expect(s.get(key)).rejects.toBeInstanceOf(RangeError);
        await expect(s.head(key)).rejects.toBeInstanceOf(RangeError);
      }
    }, T);

    it('has a description and closes', async () => {
      const s = await fresh();
      expect(typeof s.description).toBe('string');
      expect(s.description.length).toBeGreaterThan(0);
      expect(['enforced', 'unverified']).toContain(s.conditionalCreate);
    }, T);
  });
}

/** Random bytes made on the fly, hashed as they are produced: no copy of the whole stream is kept. */
export function randomStream(size: number, chunk = MiB): { stream: Readable; digest: () => string } {
  const hash = createHash('sha256');
  async function* gen(): AsyncGenerator<Buffer> {
    for (let left = size; left > 0; left -= chunk) {
      const b = randomBytes(Math.min(chunk, left));
      hash.update(b);
      yield b;
    }
  }
  return { stream: Readable.from(gen()), digest: () => hash.digest('hex') };
}

export async function digestOf(body: AsyncIterable<Buffer>): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const c of body) {
    hash.update(c);
    size += c.length;
  }
  return { sha256: hash.digest('hex'), size };
}

export async function listAll(s: Storage, prefix: string): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const o of s.list(prefix)) out.push(o);
  return out;
}

export async function listKeys(s: Storage, prefix: string): Promise<string[]> {
  return (await listAll(s, prefix)).map((o) => o.key);
}

async function inBatches<T>(items: T[], width: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += width) await Promise.all(items.slice(i, i + width).map(fn));
}
