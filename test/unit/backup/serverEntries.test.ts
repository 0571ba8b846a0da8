/**
 * The entries of a backup taken with BASE_BACKUP, from the server's tar archives (untrusted input):
 * unsafe names and links refused, tablespaces placed under pg_tblspc/<oid>/ as the local walk does,
 * backup_label and tablespace_map kept, file bodies streamed through the one volume writer into the
 * same volumes and manifest as the local path makes from the same files.
 */
import { createHash } from 'node:crypto';
import { readPart } from '../../../src/archive/parts';
import { serverEntries, type ServerLabelFiles } from '../../../src/backup/serverEntries';
import { packTar, type TarInput } from '../../../src/backup/tar';
import { encodeUstarBlock, TAR_END } from '../../../src/backup/tarHeader';
import { VolumeWriter, type VolumeEntry } from '../../../src/backup/volumes';
import { IntegrityError, ProtocolError } from '../../../src/errors';
import type { ServerArchive } from '../../../src/postgres/replication/baseBackupStream';
import { MemoryStorage } from '../../../src/storage/memory';
import { testDeps } from '../../helpers/deps';

const MTIME = 1_700_000_000;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A tar as the server sends it (no end blocks), plus the end blocks serverArchives adds. */
async function serverTar(inputs: TarInput[]): Promise<AsyncIterable<Buffer>> {
  const parts: Buffer[] = [];
  for await (const c of packTar(inputs)) parts.push(c);
  const whole = Buffer.concat(parts);
  const withoutEnd = whole.subarray(0, whole.length - TAR_END.length);
  // Cut in odd pieces, as CopyData messages may be.
  const chunks: Buffer[] = [];
  for (let i = 0; i < withoutEnd.length; i += 700) chunks.push(withoutEnd.subarray(i, i + 700));
  return (async function* () {
    yield* chunks;
    yield TAR_END;
  })();
}

const file = (path: string, content: string | Buffer): TarInput => {
  const b = Buffer.isBuffer(content) ? content : Buffer.from(content);
  return { header: { path, type: 'file', size: b.length, mode: 0o600, mtime: MTIME }, body: [b] };
};
const dir = (path: string): TarInput => ({ header: { path, type: 'directory', size: 0, mode: 0o700, mtime: MTIME } });

async function* archives(list: { name: string; location: string; inputs: TarInput[] }[]): AsyncGenerator<ServerArchive> {
  for (const a of list) yield { name: a.name, location: a.location, data: await serverTar(a.inputs) };
}

const options = { tablespaces: new Map([['/srv/ts', 16384]]), pgMajor: 15, now: MTIME };

/** Runs the entries with each file body read (as the volume writer does), collecting what passed. */
async function collect(list: Parameters<typeof archives>[0], label: ServerLabelFiles = {}): Promise<{ path: string; type: string; content?: string }[]> {
  const out: { path: string; type: string; content?: string }[] = [];
  for await (const e of serverEntries(archives(list), options, label)) {
    if (e.body) {
      const parts: Buffer[] = [];
      for await (const c of e.body) parts.push(c);
      out.push({ path: e.path, type: e.type, content: Buffer.concat(parts).toString() });
    } else out.push({ path: e.path, type: e.type, ...(e.data ? { content: e.data.toString() } : {}) });
  }
  return out;
}

const LABEL = 'START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n';

describe('serverEntries', () => {
  it('maps a tablespace archive under pg_tblspc/<oid>/, keeps the data directory paths, and captures backup_label and tablespace_map', async () => {
    const label: ServerLabelFiles = {};
    const got = await collect(
      [
        { name: '16384.tar', location: '/srv/ts', inputs: [dir('PG_15_202209061'), dir('PG_15_202209061/5'), file('PG_15_202209061/5/16385', 'rows')] },
        { name: 'base.tar', location: '', inputs: [file('backup_label', LABEL), file('tablespace_map', '16384 /srv/ts\n'), dir('base'), file('base/1/1259', 'catalog'), dir('pg_tblspc'), file('global/pg_control', 'control')] },
      ],
      label,
    );
    expect(got).toEqual([
      { path: 'pg_tblspc/16384', type: 'directory' },
      { path: 'pg_tblspc/16384/PG_15_202209061', type: 'directory' },
      { path: 'pg_tblspc/16384/PG_15_202209061/5', type: 'directory' },
      { path: 'pg_tblspc/16384/PG_15_202209061/5/16385', type: 'file', content: 'rows' },
      { path: 'backup_label', type: 'file', content: LABEL },
      { path: 'tablespace_map', type: 'file', content: '16384 /srv/ts\n' },
      { path: 'base', type: 'directory' },
      { path: 'base/1/1259', type: 'file', content: 'catalog' },
      { path: 'pg_tblspc', type: 'directory' },
      { path: 'global/pg_control', type: 'file', content: 'control' },
    ]);
    expect(label.backupLabel?.toString()).toBe(LABEL);
    expect(label.tablespaceMap?.toString()).toBe('16384 /srv/ts\n');
  });

  it.each([
    ['../x', '..'],
    ['base/../../x', '..'],
    ['/etc/passwd', 'absolute'],
  ])('refuses a tar entry named %j (%s) before anything of it is stored', async (name) => {
    const run = collect([{ name: 'base.tar', location: '', inputs: [file('PG_VERSION', '15\n'), file(name, 'evil')] }]);
    await expect(run).rejects.toThrow(IntegrityError);
    await expect(run).rejects.toThrow(/refusing an unsafe name/);
  });

  it('refuses a tar made by hand with a ../x entry (raw ustar header, as a hostile server would send it)', async () => {
    const header = encodeUstarBlock({ name: '../x', typeflag: '0', size: 4, mode: 0o600, mtime: MTIME, linkname: '' });
    const body = Buffer.alloc(512);
    body.write('evil');
    const raw: ServerArchive = { name: 'base.tar', location: '', data: (async function* () {
        yield* [header, body, TAR_END];
      })() };
    const it = serverEntries((async function* () { yield raw; })(), options, {});
    await expect(it.next()).rejects.toThrow(/"\.\.\/x": refusing an unsafe name/);
  });

  it.each([
    ['pointing outside', '/etc'],
    ['pointing inside', 'base'],
  ])('refuses a symbolic link %s (a walts backup holds no links)', async (_what, target) => {
    const link: TarInput = { header: { path: 'pg_tblspc/16384', type: 'symlink', size: 0, mode: 0o777, mtime: MTIME, linkname: target } };
    await expect(collect([{ name: 'base.tar', location: '', inputs: [link] }])).rejects.toThrow(/symbolic link.*holds no links/);
  });

  it('refuses a tablespace archive holding more than its PG_15_* directory, and tablespace files inside the data directory archive', async () => {
    await expect(collect([{ name: '16384.tar', location: '/srv/ts', inputs: [file('evil', 'x')] }])).rejects.toThrow(/holds only its PG_15_\* directory/);
    await expect(collect([{ name: 'base.tar', location: '', inputs: [file('pg_tblspc/16384/PG_15_1/x', 'x')] }])).rejects.toThrow(/their own archives/);
  });

  it('refuses archives that do not match the tablespace list', async () => {
    await expect(collect([{ name: '99.tar', location: '/elsewhere', inputs: [] }])).rejects.toThrow(ProtocolError);
    await expect(collect([{ name: '99.tar', location: '/srv/ts', inputs: [] }])).rejects.toThrow(/expected 16384\.tar/);
    await expect(collect([{ name: 'base.tar.gz', location: '', inputs: [] }])).rejects.toThrow(/expected base\.tar/);
    await expect(collect([{ name: '16384.tar', location: '/srv/ts', inputs: [] }])).rejects.toThrow(/never came/);
  });
});

describe('VolumeWriter with bodies streamed from the server', () => {
  it('stores the same volumes and manifest as from files with the same content, reading each body before the next header', async () => {
    const files: [string, Buffer][] = [
      ['base/1/1259', Buffer.alloc(300 * 1024, 1)],
      ['base/1/1260', Buffer.alloc(0)],
      ['base/1/2600', Buffer.from('x'.repeat(513))],
      ['global/pg_control', Buffer.alloc(8192, 9)],
    ];
    const streamed = testDeps(new MemoryStorage());
    const inMemory = testDeps(new MemoryStorage());
    const write = async (deps: typeof streamed, entries: AsyncIterable<VolumeEntry> | VolumeEntry[]) => {
      const writer = new VolumeWriter({ storage: deps.storage, codecs: deps.codecs, keyFor: (i) => `vol/${i}.tar${deps.codecs.writeSuffix}`, volumeSize: 128 * 1024 });
      for await (const e of entries) await writer.add(e);
      return { volumes: await writer.settle(), manifest: writer.entries };
    };
    const fromServer = await write(streamed, serverEntries(archives([{ name: 'base.tar', location: '', inputs: [dir('base'), ...files.map(([p, b]) => file(p, b))] }]), options, {}));
    const fromData = await write(inMemory, [{ path: 'base', type: 'directory', mode: 0o700, mtime: MTIME }, ...files.map(([path, data]): VolumeEntry => ({ path, type: 'file', mode: 0o600, mtime: MTIME, data }))]);
    expect(fromServer.volumes.length).toBeGreaterThan(1);
    expect(fromServer.volumes).toEqual(fromData.volumes);
    expect(fromServer.manifest).toEqual(fromData.manifest);
    for (const [path, data] of files) expect(fromServer.manifest.find((e) => e.path === path)?.sha256).toBe(sha256(data));
    // The volume holds the bytes: decode the first one and find the first file's content in it.
    let plain = Buffer.alloc(0);
    await readPart(streamed, fromServer.volumes[0]!, undefined, async (s) => {
      const parts: Buffer[] = [];
      for await (const c of s) parts.push(c);
      plain = Buffer.concat(parts);
    });
    expect(plain.includes(files[0]![1])).toBe(true);
  });
});
