import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFile, lstat, mkdir, mkdtemp, open, readdir, readFile, readlink, rm, symlink, truncate, utimes, writeFile, chmod, link } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { IntegrityError } from '../../../src/errors';
import { fileBody, MAX_OCTAL_11, packTar, parseTar, safeRelativePath, TAR_END, tarHeader, tarPadding, type FileBodyResult, type TarEntryHeader, type TarInput } from '../../../src/backup/tar';
import { decodePaxRecords, decodeUstarBlock, encodePaxRecords } from '../../../src/backup/tarHeader';

interface Parsed {
  header: TarEntryHeader;
  data: Buffer;
}

async function pack(inputs: Iterable<TarInput> | AsyncIterable<TarInput>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of packTar(inputs)) parts.push(chunk);
  return Buffer.concat(parts);
}

async function parseAll(source: AsyncIterable<Uint8Array>): Promise<Parsed[]> {
  const out: Parsed[] = [];
  for await (const { header, body } of parseTar(source)) {
    const parts: Buffer[] = [];
    for await (const chunk of body) parts.push(chunk);
    out.push({ header, data: Buffer.concat(parts) });
  }
  return out;
}

/** Entries with digests instead of bodies: jest compares large Buffers slowly and prints them badly. */
function summary(entries: Parsed[]): { header: TarEntryHeader; bytes: number; sha256: string }[] {
  return entries.map(({ header, data }) => ({ header, bytes: data.length, sha256: sha(data) }));
}

/** Deterministic PRNG (mulberry32) so a failing chunking can be replayed. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Re-slices `buf` into chunks whose sizes come from `next` (copies, as a socket would deliver them). */
async function* rechunk(buf: Buffer, next: () => number): AsyncGenerator<Buffer> {
  for (let pos = 0; pos < buf.length; ) {
    const n = Math.max(1, next());
    yield Buffer.from(buf.subarray(pos, pos + n));
    pos += n;
  }
}

async function* once(buf: Buffer): AsyncGenerator<Buffer> {
  yield buf;
}

/** Sets header bytes and recomputes the checksum, to craft headers our writer never makes. */
function patchHeader(archive: Buffer, blockOffset: number, offset: number, bytes: Buffer | string): Buffer {
  const out = Buffer.from(archive);
  const block = out.subarray(blockOffset, blockOffset + 512);
  (typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes).copy(block, offset);
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of block) sum += b;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return out;
}

function tar(args: string[], cwd?: string): string {
  const r = spawnSync('tar', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0 || r.stderr !== '') throw new Error(`tar ${args.join(' ')} → ${r.status}: ${r.stderr}`);
  return r.stdout;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const file = (path: string, data: Buffer | string, mode = 0o600, mtime = 1_700_000_000): TarInput & { data: Buffer } => {
  const buf = Buffer.from(data);
  return { header: { path, type: 'file', size: buf.length, mode, mtime }, body: [buf], data: buf };
};
const dir = (path: string, mode = 0o700, mtime = 1_700_000_000): TarInput => ({ header: { path, type: 'directory', size: 0, mode, mtime } });
const link_ = (path: string, linkname: string, mtime = 1_700_000_000): TarInput => ({ header: { path, type: 'symlink', size: 0, mode: 0o777, mtime, linkname } });

const LONG_PATH = `data/${'d'.repeat(60)}/${'f'.repeat(85)}`; // 151 bytes
const UNICODE_PATH = 'data/ünïcödé/文件-😀.txt';
const LONG_TARGET = `../${'t'.repeat(120)}`;

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'walts-tar-'));
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

describe('tarHeader', () => {
  it('writes one checksummed ustar block for a short entry', () => {
    const block = tarHeader({ path: 'base/1/1259', type: 'file', size: 8192, mode: 0o600, mtime: 1_700_000_000 });
    expect(block.length).toBe(512);
    expect(block.toString('latin1', 100, 108)).toBe('0000600\0');
    expect(block.toString('latin1', 124, 136)).toBe('00000020000\0');
    expect(block.toString('latin1', 156, 157)).toBe('0');
    expect(block.toString('latin1', 257, 265)).toBe('ustar\x0000');
    expect(decodeUstarBlock(block)).toEqual({ name: 'base/1/1259', typeflag: '0', size: 8192, mode: 0o600, mtime: 1_700_000_000, linkname: '' });
  });

  const base = { type: 'file' as const, size: 0, mode: 0o600, mtime: 0 };
  test.each<[string, string[], TarEntryHeader]>([
    ['a 100-byte path', [], { ...base, path: 'p'.repeat(100) }],
    ['a 101-byte path', ['path'], { ...base, path: 'p'.repeat(101) }],
    ['a non-ASCII path', ['path'], { ...base, path: 'é' }],
    ['a 100-byte link target', [], { ...base, type: 'symlink', path: 'l', linkname: 't'.repeat(100) }],
    ['a 101-byte link target', ['linkpath'], { ...base, type: 'symlink', path: 'l', linkname: 't'.repeat(101) }],
    ['a non-ASCII link target', ['linkpath'], { ...base, type: 'symlink', path: 'l', linkname: '../ü' }],
    ['size 8 GiB - 1', [], { ...base, path: 'f', size: MAX_OCTAL_11 }],
    ['size 8 GiB', ['size'], { ...base, path: 'f', size: MAX_OCTAL_11 + 1 }],
    ['a negative mtime', ['mtime'], { ...base, path: 'f', mtime: -1 }],
    ['all of them', ['path', 'linkpath', 'mtime'], { ...base, type: 'symlink', path: 'é', linkname: 'ü', mtime: 8 ** 11 }],
  ])('%s → pax keys %j', async (_what, keys, entry) => {
    const h = tarHeader(entry);
    if (keys.length === 0) expect(h.length).toBe(512);
    else {
      const pax = decodeUstarBlock(h);
      expect(pax.typeflag).toBe('x');
      expect([...decodePaxRecords(h.subarray(512, 512 + pax.size)).keys()]).toEqual(keys);
      expect(h.length % 512).toBe(0);
    }
    if (entry.size === 0) expect((await parseAll(once(Buffer.concat([h, TAR_END]))))[0]!.header).toEqual(entry);
  });

  it('counts the digits of its own length in each pax record', () => {
    for (let n = 0; n < 1100; n++) {
      const rec = encodePaxRecords([['path', 'a'.repeat(n)]]);
      expect(Number(rec.toString('latin1').split(' ')[0])).toBe(rec.length);
      expect(decodePaxRecords(rec).get('path')).toBe('a'.repeat(n));
    }
  });

  test.each<[string, Partial<TarEntryHeader>]>([
    ['an empty path', { path: '' }],
    ['a NUL in the path', { path: 'a\0b' }],
    ['a negative size', { size: -1 }],
    ['a fractional size', { size: 1.5 }],
    ['a mode above 0o7777', { mode: 0o10000 }],
    ['a directory with a size', { type: 'directory', size: 1 }],
    ['a symlink without target', { type: 'symlink' }],
    ['a file with a link target', { linkname: 'x' }],
    ['an unknown type', { type: 'fifo' as never }],
  ])('refuses %s', (_what, patch) => {
    expect(() => tarHeader({ path: 'f', type: 'file', size: 0, mode: 0o600, mtime: 0, ...patch })).toThrow(RangeError);
  });

  test.each([
    [0, 0],
    [1, 511],
    [511, 1],
    [512, 0],
    [513, 511],
  ])('pads %i bytes with %i zeros', (size, pad) => {
    expect(tarPadding(size)).toEqual(Buffer.alloc(pad));
  });

  it('ends archives with 1024 zero bytes', () => expect(TAR_END).toEqual(Buffer.alloc(1024)));
});

describe('fileBody', () => {
  async function copy(path: string, declared: number, chunkSize: number, during?: (i: number) => Promise<void>): Promise<{ data: Buffer; result: FileBodyResult; chunks: number[] }> {
    const handle = await open(path, 'r');
    try {
      let done: FileBodyResult | undefined;
      const chunks: Buffer[] = [];
      for await (const chunk of fileBody(handle, declared, { chunkSize, onDone: (r) => (done = r) })) {
        chunks.push(chunk);
        await during?.(chunks.length);
      }
      return { data: Buffer.concat(chunks), result: done!, chunks: chunks.map((c) => c.length) };
    } finally {
      await handle.close();
    }
  }
  const content = Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 7) & 0xff));

  test.each([
    ['of the declared size', 10_000, content, false, false],
    ['that shrank before the copy', 12_000, Buffer.concat([content, Buffer.alloc(2000)]), true, false],
    ['that grew before the copy', 4000, content.subarray(0, 4000), false, true],
    ['declared empty', 0, Buffer.alloc(0), false, true],
  ])('copies a file %s', async (_what, declared, expected, shrank, grew) => {
    const path = join(tmp, 'fb-static');
    await writeFile(path, content);
    const { data, result, chunks } = await copy(path, declared, 4096);
    expect(data).toEqual(expected);
    expect(Math.max(0, ...chunks)).toBeLessThanOrEqual(4096);
    expect(result).toEqual({ sha256: sha(expected), bytesFromFile: Math.min(declared, content.length), shrank, grew });
  });

  it('zero-fills a file truncated while it is read, and reads no further', async () => {
    const path = join(tmp, 'fb-shrink');
    await writeFile(path, content);
    const { data, result } = await copy(path, 10_000, 4096, async (i) => {
      if (i === 1) await truncate(path, 5000);
      // chunk 2 is the 904 bytes left, chunk 3 the first zeros: the file ended. Data written back now is ignored.
      if (i === 3) await writeFile(path, Buffer.alloc(10_000, 0xee));
    });
    const expected = Buffer.concat([content.subarray(0, 5000), Buffer.alloc(5000)]);
    expect(data).toEqual(expected);
    expect(result).toEqual({ sha256: sha(expected), bytesFromFile: 5000, shrank: true, grew: false });
  });

  it('stops at the declared size of a file appended to while it is read', async () => {
    const path = join(tmp, 'fb-grow');
    await writeFile(path, content);
    const { data, result } = await copy(path, 10_000, 4096, (i) => (i === 1 ? appendFile(path, 'more') : Promise.resolve()));
    expect(data).toEqual(content);
    expect(result).toEqual({ sha256: sha(content), bytesFromFile: 10_000, shrank: false, grew: true });
  });

  it('returns the result from the generator too', async () => {
    const path = join(tmp, 'fb-ret');
    await writeFile(path, 'abc');
    const handle = await open(path, 'r');
    const gen = fileBody(handle, 3);
    expect((await gen.next()).value).toEqual(Buffer.from('abc'));
    expect((await gen.next()).value).toMatchObject({ sha256: sha(Buffer.from('abc')), shrank: false, grew: false });
    await handle.close();
  });
});

describe('packTar + parseTar round trip', () => {
  let inputs: TarInput[];
  let expected: Parsed[];
  let archive: Buffer;
  beforeAll(async () => {
    const shrinkPath = join(tmp, 'rt-shrink');
    const growPath = join(tmp, 'rt-grow');
    await writeFile(shrinkPath, 'short');
    await writeFile(growPath, 'x'.repeat(3000));
    const shrink = await open(shrinkPath, 'r');
    const grow = await open(growPath, 'r');
    const small = file('data/base/1/1259', 'hello\n');
    const multi = file('data/base/1/2600', Buffer.alloc(70_000, 0xab), 0o640);
    const empty = file('data/empty', '');
    const long = file(LONG_PATH, 'long path');
    const unicode = file(UNICODE_PATH, 'unicode');
    inputs = [
      dir('data/'),
      dir('data/base', 0o750), // written with the trailing '/' added
      small,
      multi,
      empty,
      link_('data/pg_tblspc/16384', '/mnt/ts'),
      link_('data/long-target', LONG_TARGET),
      long,
      unicode,
      { header: { path: 'data/shrunk', type: 'file', size: 1000, mode: 0o600, mtime: 5 }, body: fileBody(shrink, 1000) },
      { header: { path: 'data/grown', type: 'file', size: 1000, mode: 0o600, mtime: 5 }, body: fileBody(grow, 1000) },
    ];
    expected = [
      { header: inputs[0]!.header, data: Buffer.alloc(0) },
      { header: { ...inputs[1]!.header, path: 'data/base/' }, data: Buffer.alloc(0) },
      ...[small, multi, empty].map((f) => ({ header: f.header, data: f.data })),
      { header: inputs[5]!.header, data: Buffer.alloc(0) },
      { header: inputs[6]!.header, data: Buffer.alloc(0) },
      ...[long, unicode].map((f) => ({ header: f.header, data: f.data })),
      { header: inputs[9]!.header, data: Buffer.concat([Buffer.from('short'), Buffer.alloc(995)]) },
      { header: inputs[10]!.header, data: Buffer.alloc(1000, 'x') },
    ];
    archive = await pack(inputs);
    await shrink.close();
    await grow.close();
  });

  it('gives back every entry, whole', async () => {
    expect(archive.length % 512).toBe(0);
    expect(summary(await parseAll(once(archive)))).toEqual(summary(expected));
  });

  const random = (seed: number, max: number) => {
    const r = prng(seed);
    return () => 1 + Math.floor(r() * max);
  };
  test.each<[string, () => number]>([
    ['1 byte', () => 1],
    ['7 bytes', () => 7],
    ['511 bytes', () => 511],
    ['512 bytes', () => 512],
    ['513 bytes', () => 513],
    ['random up to 100 (seed 1)', random(1, 100)],
    ['random up to 2000 (seed 2)', random(2, 2000)],
    ['random up to 70000 (seed 3)', random(3, 70_000)],
  ])('gives the same entries from chunks of %s', async (_what, sizes) => {
    expect(summary(await parseAll(rechunk(archive, sizes)))).toEqual(summary(expected));
  });

  it('skips the bodies a consumer does not read', async () => {
    const headers: TarEntryHeader[] = [];
    let read = Buffer.alloc(0);
    for await (const { header, body } of parseTar(rechunk(archive, () => 1000))) {
      headers.push(header);
      if (header.path === UNICODE_PATH) for await (const c of body) read = Buffer.concat([read, c]);
    }
    expect(headers).toEqual(expected.map((e) => e.header));
    expect(read.toString()).toBe('unicode');
  });

  it('refuses a body read after the parser moved on', async () => {
    const it = parseTar(once(archive));
    await it.next();
    await it.next();
    const third = (await it.next()).value!; // data/base/1/1259, unread
    await it.next();
    const read = async () => {
      for await (const chunk of third.body) void chunk;
    };
    await expect(read()).rejects.toThrow(/after the parser moved/);
    await it.return();
  });

  test.each([
    ['longer', ['abc', 'd']],
    ['shorter', ['ab']],
  ])('refuses a body %s than its header says', async (_what, chunks) => {
    const input: TarInput = { header: { path: 'f', type: 'file', size: 3, mode: 0o600, mtime: 0 }, body: chunks.map((c) => Buffer.from(c)) };
    await expect(pack([input])).rejects.toThrow(/the header says 3/);
  });
});

describe('GNU tar interop', () => {
  it('extracts what packTar writes: contents, modes, mtimes, symlinks, long and non-ASCII names', async () => {
    const entries = [
      dir('data/', 0o700, 1_600_000_000),
      file('data/small', 'hello\n', 0o600, 1_600_000_001),
      file('data/empty', '', 0o640, 1_600_000_002),
      file('data/exec', Buffer.alloc(1_048_579, 7), 0o755, 1_600_000_003),
      link_('data/link', 'small'),
      link_('data/dangling', LONG_TARGET),
      dir(`data/${'d'.repeat(60)}`, 0o750, 1_600_000_004),
      file(LONG_PATH, 'long', 0o644, 1_600_000_005),
      dir('data/ünïcödé', 0o700, 1_600_000_006),
      file(UNICODE_PATH, 'unicode', 0o600, 1_600_000_007),
    ];
    const archive = join(tmp, 'ours.tar');
    await writeFile(archive, await pack(entries));
    expect(tar(['-tf', archive]).split('\n').filter(Boolean)).toEqual(entries.map((e) => (e.header.type === 'directory' ? `${e.header.path.replace(/\/$/, '')}/` : e.header.path)));
    const out = join(tmp, 'ours-x');
    await mkdir(out);
    tar(['-xpf', archive, '--no-same-owner', '-C', out]);
    for (const { header, data } of entries as (TarInput & { data?: Buffer })[]) {
      const p = join(out, header.path);
      const st = await lstat(p);
      if (header.type === 'symlink') {
        expect(st.isSymbolicLink()).toBe(true);
        expect(await readlink(p)).toBe(header.linkname);
        continue;
      }
      expect({ path: header.path, mode: st.mode & 0o7777, mtime: Math.floor(st.mtimeMs / 1000) }).toEqual({ path: header.path, mode: header.mode, mtime: header.mtime });
      if (header.type === 'file') expect(sha(await readFile(p))).toBe(sha(data!));
      else expect(st.isDirectory()).toBe(true);
    }
    expect((await readdir(out, { recursive: true })).some((n) => n.includes('PaxHeaders'))).toBe(false);
  });

  const random7 = () => {
    const r = prng(7);
    return () => 1 + Math.floor(r() * 5000);
  };

  /** A PGDATA-like tree; `long` adds what only pax and GNU formats can hold. */
  async function makeTree(root: string, long: boolean): Promise<void> {
    const deep = join(root, 'pgdata', 'a'.repeat(40), 'b'.repeat(40), 'c'.repeat(40)); // prefix-split in ustar
    await mkdir(deep, { recursive: true });
    await mkdir(join(root, 'pgdata', 'ünïcödé'));
    await writeFile(join(deep, 'f'.repeat(40)), 'deep');
    await writeFile(join(root, 'pgdata', 'PG_VERSION'), '16\n', { mode: 0o600 });
    await writeFile(join(root, 'pgdata', 'empty'), '');
    await writeFile(join(root, 'pgdata', 'ünïcödé', '文件'), 'unicode');
    await writeFile(join(root, 'pgdata', 'blob'), Buffer.from(Array.from({ length: 100_003 }, (_, i) => (i * 31) & 0xff)));
    await chmod(join(root, 'pgdata', 'blob'), 0o640);
    await symlink('/var/lib/ts', join(root, 'pgdata', 'ts'));
    if (long) {
      await writeFile(join(root, 'pgdata', 'g'.repeat(150)), 'long name');
      await symlink(`/${'L'.repeat(150)}`, join(root, 'pgdata', 'longlink'));
    }
    await utimes(join(root, 'pgdata', 'PG_VERSION'), 1_234_567_890, 1_234_567_890);
  }

  async function expectedTree(root: string): Promise<Parsed[]> {
    const names = ['pgdata', ...(await readdir(join(root, 'pgdata'), { recursive: true })).map((n) => `pgdata/${n}`)];
    const out: Parsed[] = [];
    for (const name of names) {
      const st = await lstat(join(root, name));
      const common = { mode: st.mode & 0o7777, mtime: Math.floor(st.mtimeMs / 1000) };
      if (st.isDirectory()) out.push({ header: { path: `${name}/`, type: 'directory', size: 0, ...common }, data: Buffer.alloc(0) });
      else if (st.isSymbolicLink()) out.push({ header: { path: name, type: 'symlink', size: 0, ...common, linkname: await readlink(join(root, name)) }, data: Buffer.alloc(0) });
      else out.push({ header: { path: name, type: 'file', size: st.size, ...common }, data: await readFile(join(root, name)) });
    }
    return out.sort((a, b) => a.header.path.localeCompare(b.header.path));
  }

  test.each([
    ['pax', true, ['--pax-option=comment=walts']], // comment=… goes into a global 'g' header
    ['gnu', true, []],
    ['ustar', false, []],
  ])('parses what `tar --format=%s -c` writes', async (format, long, extra) => {
    const root = join(tmp, `gnu-${format}`);
    await mkdir(root);
    await makeTree(root, long);
    const archive = join(tmp, `gnu-${format}.tar`);
    tar([`--format=${format}`, ...extra, '-cf', archive, '-C', root, 'pgdata']);
    const got = await parseAll(rechunk(await readFile(archive), random7()));
    // tar stores a symlink's own mode bits as 0777; a directory's mtime is what it was when tar ran.
    expect(summary(got.sort((a, b) => a.header.path.localeCompare(b.header.path)))).toEqual(summary(await expectedTree(root)));
  });

  test.each([
    ['a hard link', /hard link/, async (root: string) => (await writeFile(join(root, 'a'), 'x'), link(join(root, 'a'), join(root, 'b')))],
    ['a FIFO', /FIFO/, async (root: string) => void spawnSync('mkfifo', [join(root, 'fifo')])],
  ])('refuses %s made by GNU tar', async (what, message, make) => {
    const root = join(tmp, `refuse-${what.replace(/ /g, '-')}`);
    await mkdir(root);
    await make(root);
    const archive = join(tmp, `${what.replace(/ /g, '-')}.tar`);
    tar(['--format=pax', '-cf', archive, '-C', root, '.']);
    await expect(parseAll(once(await readFile(archive)))).rejects.toThrow(message);
  });

  it('refuses a character device made by GNU tar', async () => {
    const archive = join(tmp, 'dev.tar');
    tar(['--format=pax', '-cf', archive, '-C', '/', 'dev/null']);
    await expect(parseAll(once(await readFile(archive)))).rejects.toThrow(/character device/);
  });
});

describe('corrupt, truncated and unsafe archives', () => {
  let archive: Buffer; // dir 'd/' (block 0), 'd/f' with 600 bytes (blocks 1-3), end (blocks 4-5)
  beforeAll(async () => {
    archive = await pack([dir('d/'), file('d/f', Buffer.alloc(600, 1))]);
    expect(archive.length).toBe(6 * 512);
  });
  const parse = (buf: Buffer) => parseAll(rechunk(buf, () => 100));

  test.each([
    ['the first header', 10],
    ['the second header', 512 + 120],
    ['a checksum digit', 148],
  ])('refuses a flipped byte in %s', async (_what, at) => {
    const bad = Buffer.from(archive);
    bad[at]! ^= 0x01;
    await expect(parse(bad)).rejects.toThrow(/checksum mismatch/);
  });

  it('refuses a block that is not a ustar header', async () => {
    await expect(parse(patchHeader(archive, 0, 257, 'XXXXXX'))).rejects.toThrow(/not a ustar header/);
  });

  test.each([
    ['an empty source', 0, /without its end-of-archive blocks/],
    ['inside the first header', 300, /inside a header/],
    ['inside a body', 512 * 2 + 10, /inside "d\/f" \(10 of 600 bytes\)/],
    ['inside the padding', 512 * 3 + 100, /inside the padding/],
    ['before the end blocks', 512 * 4, /without its end-of-archive blocks/],
    ['after one end block', 512 * 5, /after one of its two end-of-archive blocks/],
    ['inside the second end block', 512 * 5 + 511, /after one of its two end-of-archive blocks/],
  ])('refuses an archive cut %s', async (_what, length, message) => {
    const err = await parse(archive.subarray(0, length)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as Error).message).toMatch(/truncated/);
    expect((err as Error).message).toMatch(message);
  });

  it('accepts zero padding after the end blocks (GNU tar records) but no other data', async () => {
    await expect(parse(Buffer.concat([archive, Buffer.alloc(10240 - archive.length)]))).resolves.toHaveLength(2);
    await expect(parse(Buffer.concat([archive, Buffer.from('junk')]))).rejects.toThrow(/data after the end/);
  });

  it('refuses a zero block followed by an entry', async () => {
    await expect(parse(Buffer.concat([Buffer.alloc(512), archive]))).rejects.toThrow(/zero block inside/);
  });

  test.each([
    ['1', /hard link/],
    ['3', /character device/],
    ['4', /block device/],
    ['6', /FIFO/],
    ['7', /contiguous file/],
    ['S', /GNU sparse/],
    ['V', /unknown type "V"/],
  ])('refuses type flag %s', async (flag, message) => {
    const err = await parse(patchHeader(archive, 512, 156, flag)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as Error).message).toMatch(message);
  });

  it('refuses pax sparse files and malformed pax records', async () => {
    const sparse = await pack([{ header: { path: 'p'.repeat(101), type: 'file', size: 0, mode: 0o600, mtime: 0 } }]);
    const body = encodePaxRecords([['GNU.sparse.major', '1']]);
    const withBody = (b: Buffer | string) => {
      const out = patchHeader(sparse, 0, 124, `${Buffer.byteLength(b).toString(8).padStart(11, '0')}\0`);
      Buffer.from(b).copy(out, 512);
      return out;
    };
    await expect(parse(withBody(body))).rejects.toThrow(/GNU sparse file/);
    await expect(parse(withBody('99 path=x\n'))).rejects.toThrow(/malformed pax/);
    await expect(parse(withBody('9 path=xy\n'))).rejects.toThrow(/malformed pax/); // length one short of the record
    await expect(parse(withBody('6 =xx\n'))).rejects.toThrow(/malformed pax/);
  });

  it('reads a GNU base-256 size above 8 GiB', async () => {
    const size = 2 ** 33 + 5;
    const field = Buffer.alloc(12);
    field[0] = 0x80;
    field.writeUIntBE(size, 6, 6);
    const it = parseTar(once(patchHeader(archive, 512, 124, field).subarray(0, 4 * 512)));
    expect((await it.next()).value!.header.size).toBe(0);
    expect((await it.next()).value!.header).toMatchObject({ path: 'd/f', size });
    await expect(it.next()).rejects.toThrow(/truncated.*"d\/f"/);
  });

  it('reads back a pax size of 8 GiB', async () => {
    const header = tarHeader({ path: 'big', type: 'file', size: 2 ** 33, mode: 0o600, mtime: 0 });
    const it = parseTar(once(header));
    expect((await it.next()).value!.header).toEqual({ path: 'big', type: 'file', size: 2 ** 33, mode: 0o600, mtime: 0 });
    await expect(it.next()).rejects.toThrow(/truncated/);
  });
});

describe('safeRelativePath', () => {
  test.each<[string, string | undefined]>([
    ['a/b', 'a/b'],
    ['./ok/', 'ok'],
    ['ok/./x', 'ok/x'],
    ['a//b/', 'a/b'],
    ['pg_tblspc/16384', 'pg_tblspc/16384'],
    ['..a/b..', '..a/b..'],
    ['ünï/文件', 'ünï/文件'],
    ['', undefined],
    ['.', undefined],
    ['./', undefined],
    ['..', undefined],
    ['../x', undefined],
    ['a/../../b', undefined],
    ['a/..', undefined],
    ['a/../b', undefined], // harmless, but no archive of ours has it: refuse rather than resolve
    ['/etc/passwd', undefined],
    ['//x', undefined],
    ['a\\b', undefined],
    ['..\\x', undefined],
    ['a\0b', undefined],
  ])('%j → %j', (name, expected) => {
    expect(safeRelativePath(name)).toBe(expected);
  });
});

describe('a 64 MiB entry', () => {
  const MiB = 1 << 20;
  const gc = (() => {
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as () => void;
  })();
  const memory = () => {
    gc();
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };

  /** Packs 64 fresh 1 MiB chunks through a byte stream and parses them; returns peak memory growth. */
  async function streamThrough(keep: Buffer[] | undefined): Promise<number> {
    const hashIn = createHash('sha256');
    async function* body(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 64; i++) {
        const chunk = Buffer.alloc(MiB, i);
        hashIn.update(chunk);
        yield chunk;
      }
    }
    const base = memory();
    let peak = 0;
    const hashOut = createHash('sha256');
    const stream = Readable.from(packTar([{ header: { path: 'big', type: 'file', size: 64 * MiB, mode: 0o600, mtime: 0 }, body: body() }]), { objectMode: false, highWaterMark: MiB });
    let n = 0;
    for await (const { body: entryBody } of parseTar(stream)) {
      for await (const chunk of entryBody) {
        hashOut.update(chunk);
        keep?.push(chunk);
        if ((n += chunk.length) % (8 * MiB) < chunk.length) peak = Math.max(peak, memory() - base);
      }
    }
    expect(n).toBe(64 * MiB);
    expect(hashOut.digest('hex')).toBe(hashIn.digest('hex'));
    return peak;
  }

  it('streams through pack and parse in bounded memory', async () => {
    expect(await streamThrough(undefined)).toBeLessThan(32 * MiB);
  });

  it('(control: the measurement sees a consumer that keeps every chunk)', async () => {
    expect(await streamThrough([])).toBeGreaterThan(48 * MiB);
  });
});
