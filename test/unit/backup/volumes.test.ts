/**
 * The volume writer of backup-push: volumes written concurrently hold exactly what one at a time
 * would (same volumes, same manifest, files restored byte for byte), each plain byte is hashed once
 * for its file and once for its volume, and a failed upload stops every volume in flight.
 */
import * as crypto from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { readPart } from '../../../src/archive/parts';
import { Extractor } from '../../../src/backup/extract';
import type { StoredPart } from '../../../src/backup/sentinel';
import { VolumeWriter, type ManifestEntry, type VolumeEntry } from '../../../src/backup/volumes';
import type { Deps } from '../../../src/deps';
import { MemoryStorage } from '../../../src/storage/memory';
import type { PutOptions } from '../../../src/storage/storage';
import { testDeps } from '../../helpers/deps';

const MTIME = 1_700_000_000;
const KiB = 1024;

let dir: string;
let src: string;
/** path → content of the source files. */
const files = new Map<string, Buffer>();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'walts-volumes-'));
  src = join(dir, 'src');
  await mkdir(join(src, 'base', '5'), { recursive: true });
  await mkdir(join(src, 'global'), { recursive: true });
  // Sizes around block and chunk boundaries, some larger than a volume, some compressible.
  const sizes = [0, 1, 511, 512, 513, 8 * KiB, 100 * KiB, 1024 * KiB + 3, 300 * KiB, 2 * 1024 * KiB, 64 * KiB, 5];
  for (const [i, size] of sizes.entries()) {
    const data = i % 2 ? crypto.randomBytes(size) : Buffer.alloc(size, `row ${i} `);
    files.set(`base/5/${16384 + i}`, data);
  }
  files.set('global/pg_control', crypto.randomBytes(8192));
  for (const [path, data] of files) await writeFile(join(src, path), data);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The entries of the source tree in backup order, pg_control last, as backupPush gives them. */
function entries(): VolumeEntry[] {
  const dirs: VolumeEntry[] = ['base', 'base/5', 'global'].map((path) => ({ path, type: 'directory', mode: 0o700, mtime: MTIME }));
  const data: VolumeEntry[] = [...files]
    .filter(([path]) => path !== 'global/pg_control')
    .map(([path, d]) => ({ path, type: 'file', mode: 0o600, mtime: MTIME, size: d.length, source: join(src, path) }));
  const control: VolumeEntry = { path: 'global/pg_control', type: 'file', mode: 0o600, mtime: MTIME, size: 8192, source: join(src, 'global/pg_control'), last: true };
  return [...dirs, ...data, control];
}

async function push(deps: Deps, concurrency: number): Promise<{ volumes: StoredPart[]; manifest: ManifestEntry[] }> {
  const writer = new VolumeWriter({ storage: deps.storage, codecs: deps.codecs, keyFor: (i) => `vol/${i}.tar${deps.codecs.writeSuffix}`, volumeSize: 256 * KiB, concurrency });
  for (const e of entries()) await writer.add(e);
  await writer.settle();
  await writer.add({ path: 'backup_label', type: 'file', data: Buffer.from('START WAL LOCATION: 0/2000028\n'), mode: 0o600, mtime: MTIME });
  const volumes = await writer.settle();
  return { volumes, manifest: writer.entries };
}

async function restore(deps: Deps, pushed: { volumes: StoredPart[]; manifest: ManifestEntry[] }, dest: string): Promise<void> {
  await mkdir(dest, { mode: 0o700 });
  const extractor = new Extractor(dest, pushed.manifest, new Map());
  for (const [i, part] of pushed.volumes.entries()) await readPart(deps, part, undefined, (plain) => extractor.extractVolume(i + 1, plain));
  await extractor.finish();
}

describe('VolumeWriter', () => {
  it('with several volumes in flight writes the same volumes and manifest as one at a time, and restores byte for byte', async () => {
    const one = testDeps(new MemoryStorage());
    const four = testDeps(new MemoryStorage());
    const serial = await push(one, 1);
    const parallel = await push(four, 4);

    expect(serial.volumes.length).toBeGreaterThan(4); // several volumes, so several were in flight
    expect(parallel.volumes).toEqual(serial.volumes); // same keys, sizes and plain SHA-256: the same tar bytes
    expect(parallel.manifest).toEqual(serial.manifest);
    expect(parallel.manifest.map((e) => e.path).sort()).toEqual(['backup_label', 'base', 'base/5', 'global', ...files.keys()].sort()); // complete
    expect(parallel.manifest.at(-2)?.path).toBe('global/pg_control'); // last data file, before backup_label

    await restore(four, parallel, join(dir, 'restored-parallel'));
    for (const [path, data] of files) expect((await readFile(join(dir, 'restored-parallel', path))).equals(data)).toBe(true);
  });

  it('hashes each plain byte once for its file and once for its volume, and the stored bytes not at all', async () => {
    const deps = testDeps(new MemoryStorage());
    let hashed = 0;
    // Every SHA-256 in walts is a crypto Hash: count what goes through their update().
    const update = crypto.Hash.prototype.update;
    const spy = jest.spyOn(crypto.Hash.prototype, 'update').mockImplementation(function (this: crypto.Hash, ...args: unknown[]) {
      const data = args[0] as string | Uint8Array;
      hashed += typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
      return (update as (...a: unknown[]) => crypto.Hash).apply(this, args);
    });
    try {
      const pushed = await push(deps, 4);
      const fileBytes = pushed.manifest.reduce((n, e) => n + e.size, 0);
      const tarBytes = pushed.volumes.reduce((n, v) => n + v.size, 0);
      // Files once (manifest), tar streams once (sentinel): nothing hashed a second time.
      expect(hashed).toBe(fileBytes + tarBytes);
    } finally {
      spy.mockRestore();
    }
  });

  it('a failed upload of one volume among several in flight fails the whole write and ends the others', async () => {
    const storage = new MemoryStorage();
    const deps = testDeps(storage);
    const started: string[] = [];
    const ended: string[] = [];
    const put = storage.put.bind(storage);
    storage.put = async (key: string, body: Buffer | Readable, options?: PutOptions) => {
      started.push(key);
      try {
        if (key.startsWith('vol/3.')) {
          for await (const _ of body as Readable) throw new Error('upload of volume 3 refused');
        }
        return await put(key, body, options);
      } finally {
        ended.push(key);
      }
    };
    const writer = new VolumeWriter({ storage, codecs: deps.codecs, keyFor: (i) => `vol/${i}.tar${deps.codecs.writeSuffix}`, volumeSize: 256 * KiB, concurrency: 3 });
    const run = (async () => {
      for (const e of entries()) await writer.add(e);
      await writer.settle();
    })();
    await expect(run).rejects.toThrow('upload of volume 3 refused');
    await writer.abort(new Error('stopped'));
    expect(started.length).toBeGreaterThan(1);
    expect([...ended].sort()).toEqual([...started].sort()); // nothing left running
    expect([...storage.objects.keys()].some((k) => k.startsWith('vol/3.'))).toBe(false);
  });
});
