/**
 * Acceptance for backup-fetch against backups written by an adversary (issue 7, sections 2, 4, 5):
 * someone with write access to the store and the public key can write any volume, manifest and
 * sentinel. Each backup here is crafted with walts' own tar writer and codec chain into a real
 * directory store, then restored by the walts binary (as root when the suite runs as root):
 * - a tablespace location from the metadata, a pg_tblspc/<oid> symlink to /etc, symlinks pointing
 *   outside (pg_wal -> /elsewhere, x -> /etc/passwd), `..`, absolute paths, a hard link: exit 3,
 *   one line, nothing created outside DEST (and nothing at all when the manifest already tells);
 * - a corrupt file, a corrupt volume, a missing volume: exit 3 with the real cause, no AbortError,
 *   no stack; a full disk at DEST (root only: a small tmpfs): exit 4, "disk full at DEST";
 * - recovery settings read back by PostgreSQL's own `postgres -C`: --target-name 'rp\x', a trailing
 *   backslash, quotes; archive_mode = off by default; refusals (impossible dates, empty
 *   --restore-command, an LSN beyond the archive) with exit 2 and nothing written.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import pino from 'pino';
import { backupKeys } from '../../src/archive/layout';
import { packTar, tarHeader, type TarInput } from '../../src/backup/tar';
import type { BackupSentinel, StoredPart } from '../../src/backup/sentinel';
import type { ManifestEntry } from '../../src/backup/volumes';
import { loadConfig } from '../../src/config';
import { makeDeps, type Deps } from '../../src/deps';
import { loadSigningKey, signSentinel } from '../../src/backup/signature';
import { DigestStream, pipeStages, readAll } from '../../src/util/streams';
import { PG_OS_USER, pgBin, trackClusters } from '../helpers/pg';
import { isRoot, run, runOk, runWalts } from '../helpers/run';
import { fakeSentinel } from '../helpers/sentinel';
import { startStore, type TestStore } from '../helpers/stores';
import { createHash } from 'node:crypto';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const MTIME = 1_700_000_000;
const rootIt = isRoot() ? it : it.skip;

interface Item {
  path: string;
  type?: 'file' | 'directory' | 'symlink';
  content?: string | Buffer;
  link?: string;
  /** Put in the volume but not in the manifest. */
  volumeOnly?: boolean;
  /** Put in the manifest but not in the volume. */
  manifestOnly?: boolean;
  /** Manifest records this content's digest instead of the real one. */
  manifestContent?: string;
}

/** A minimal data directory: enough for `postgres -C` to read its configuration. */
const BASE: Item[] = [
  { path: 'PG_VERSION', content: '15\n' },
  { path: 'postgresql.conf', content: '# crafted\n' },
  { path: 'global', type: 'directory' },
  { path: 'global/pg_control', content: 'not really a control file' },
];

describe('backup-fetch of crafted backups (directory store, lz4)', () => {
  const reg = trackClusters();
  let store: TestStore;
  let deps: Deps;
  let work: string;
  let outside: string;
  let seq = 10;

  beforeAll(async () => {
    store = await startStore('file', reg, 'crafted');
    const config = loadConfig({ env: { ...store.env, WALTS_COMPRESSION: 'lz4' }, readFile: () => ({ text: '', mode: 0o600 }) });
    deps = makeDeps(config, pino({ level: 'silent' }));
    work = await reg.tempDir('crafted', { forPostgres: true });
    outside = join(work, 'outside');
    mkdirSync(outside);
  });
  afterAll(async () => {
    await deps?.storage.close();
    await reg.cleanupAll();
    await store?.stop();
  });

  async function putEncoded(key: string, chunks: AsyncIterable<Buffer> | Buffer[]): Promise<StoredPart> {
    const plain = new DigestStream();
    const stored = new DigestStream();
    await pipeStages([Readable.from(chunks), plain, ...deps.codecs.encoders(), stored, async (s: AsyncIterable<Buffer>) => deps.storage.put(key, Readable.from(s))]);
    return { key, stored_size: stored.bytes, size: plain.bytes, sha256: plain.digest() };
  }

  const bytes = (c: string | Buffer | undefined) => (Buffer.isBuffer(c) ? c : Buffer.from(c ?? ''));
  const typeOf = (i: Item) => i.type ?? 'file';

  /** Writes volumes (one per item list), manifest and sentinel; returns the backup's sentinel. */
  async function craft(volumes: Item[][], opts: { tablespaces?: BackupSentinel['tablespaces']; rawVolume?: (i: number) => Buffer[] | undefined } = {}): Promise<BackupSentinel> {
    const base = fakeSentinel(1, seq++, { finish: '2026-11-21T12:00:00Z', volumes: [], manifest: { key: '', stored_size: 0, size: 0, sha256: '' } });
    const name = base.name;
    const entries: ManifestEntry[] = [];
    const parts: StoredPart[] = [];
    for (const [v, items] of volumes.entries()) {
      for (const i of items.filter((x) => !x.volumeOnly)) {
        const type = typeOf(i);
        const data = bytes(i.manifestContent ?? i.content);
        entries.push({
          path: i.path,
          type,
          mode: type === 'directory' ? 0o700 : 0o600,
          size: type === 'file' ? bytes(i.content).length : 0,
          mtime: MTIME,
          ...(type === 'file' ? { sha256: sha(data) } : {}),
          ...(type === 'symlink' ? { link: i.link } : {}),
          volume: v + 1,
        });
      }
      const inputs: TarInput[] = items
        .filter((i) => !i.manifestOnly)
        .map((i) => {
          const type = typeOf(i);
          const data = bytes(i.content);
          return {
            header: { path: type === 'directory' ? `${i.path}/` : i.path, type, size: type === 'file' ? data.length : 0, mode: 0o600, mtime: MTIME, ...(type === 'symlink' ? { linkname: i.link } : {}) },
            body: type === 'file' && data.length > 0 ? [data] : undefined,
          };
        });
      const raw = opts.rawVolume?.(v);
      parts.push(await putEncoded(backupKeys.volume(name, v + 1, deps.codecs.writeSuffix), raw ?? packTar(inputs)));
    }
    const manifestText = [JSON.stringify({ format: 1, backup: name, entries: entries.length }), ...entries.map((e) => JSON.stringify(e))].join('\n') + '\n';
    const manifest = await putEncoded(backupKeys.manifest(name, deps.codecs.writeSuffix), [Buffer.from(manifestText)]);
    const sentinel: BackupSentinel = { ...base, volumes: parts, manifest, tablespaces: opts.tablespaces ?? [], file_count: entries.filter((e) => e.type === 'file').length };
    await deps.storage.put(backupKeys.sentinel(name), Buffer.from(JSON.stringify(sentinel)));
    return sentinel;
  }

  const fetch = (args: string[]) => runWalts(['backup-fetch', ...args], store.env, { timeoutMs: 120_000 });

  /** stderr is exactly one JSON log line, without a stack; returns its message. */
  function oneLine(stderr: string): string {
    const lines = stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    const record = JSON.parse(lines[0] ?? '{}') as { msg?: string; stack?: string };
    expect(record.stack).toBeUndefined();
    expect(record.msg).not.toMatch(/AbortError|operation was aborted/);
    return record.msg ?? '';
  }

  /** Nothing but what the test itself put there, outside DEST. */
  function expectNothingOutside(dest: string): void {
    expect(readdirSync(outside)).toEqual([]);
    for (const p of ['/anywhere', '/elsewhere', '/escape-walts', join(work, 'escape')]) expect(existsSync(p)).toBe(false);
    expect(lstatSync('/etc').isDirectory()).toBe(true);
    expect(lstatSync('/etc/passwd').isFile()).toBe(true);
    expect(readdirSync(work).filter((n) => n !== 'outside' && !n.startsWith('dest-') && n !== 'tmpfs')).toEqual([]);
    if (existsSync(dest)) expect(links(dest)).toEqual([]);
  }

  function links(dir: string): string[] {
    const found: string[] = [];
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      const st = lstatSync(p);
      if (st.isSymbolicLink()) found.push(p);
      else if (st.isDirectory()) found.push(...links(p));
    }
    return found;
  }

  describe('a backup can never write outside DEST: exit 3, one line', () => {
    it('a tablespace location in the metadata (/anywhere/ts): refused before anything is written', async () => {
      const b = await craft([[...BASE, { path: 'pg_tblspc', type: 'directory' }, { path: 'pg_tblspc/16400', type: 'directory' }, { path: 'pg_tblspc/16400/PG_15_202209061', type: 'directory' }, { path: 'pg_tblspc/16400/PG_15_202209061/f', content: 'x' }]], {
        tablespaces: [{ oid: 16400, name: 'evil', location: '/anywhere/ts' }],
      });
      const dest = join(work, 'dest-ts');
      const r = await fetch([dest, b.name]);
      expect(oneLine(r.stderr)).toMatch(/tablespaces outside the data directory.*give --tablespace evil=DIR \(recorded at "\/anywhere\/ts"\)/);
      expect(r.code).toBe(3);
      expect(existsSync(dest)).toBe(false);
      expectNothingOutside(dest);
    });

    it('a manifest entry under pg_tblspc that belongs to no tablespace, or outside its PG_15_* directory', async () => {
      for (const path of ['pg_tblspc/16400/PG_15_1/f', 'pg_tblspc/16401/authorized_keys']) {
        const b = await craft([[...BASE, { path, content: 'ssh-ed25519 AAAA evil' }]], { tablespaces: [{ oid: 16401, name: 'ok', location: '/old/ts' }] });
        const dest = join(work, `dest-foreign-${path.length}`);
        const r = await fetch([dest, b.name, '--tablespace', `ok=${join(outside, 'ts')}`]);
        expect(oneLine(r.stderr)).toMatch(/belongs to no tablespace|holds only its PG_15_\* directory/);
        expect(r.code).toBe(3);
        expect(existsSync(dest)).toBe(false);
        expectNothingOutside(dest);
      }
    });

    it.each([
      ['pg_tblspc/16400', '/etc'],
      ['pg_wal', '/elsewhere'],
      ['x', '/etc/passwd'],
      ['rel', '../outside'],
    ])('a symlink entry %s -> %s listed in the manifest: refused before anything is written', async (path, link) => {
      const b = await craft([[...BASE, { path: 'pg_tblspc', type: 'directory' }, { path, type: 'symlink', link }, ...(path === 'x' ? [] : [{ path: `${path}/planted`, content: 'through the link' }])]]);
      const dest = join(work, `dest-link-${path.replace(/\//g, '_')}`);
      const r = await fetch([dest, b.name]);
      expect(oneLine(r.stderr)).toMatch(/is a symbolic link .*walts restores no links from a backup/);
      expect(r.code).toBe(3);
      expect(existsSync(dest)).toBe(false);
      expectNothingOutside(dest);
    });

    it.each([
      ['pg_wal', '/elsewhere'],
      ['x', '/etc/passwd'],
    ])('a symlink entry %s -> %s only in the volume: refused, no link created', async (path, link) => {
      const b = await craft([[...BASE, { path, type: 'symlink', link, volumeOnly: true }]]);
      const dest = join(work, `dest-vlink-${path}`);
      const r = await fetch([dest, b.name]);
      expect(oneLine(r.stderr)).toMatch(/is a symbolic link .*walts restores no links from a backup/);
      expect(r.code).toBe(3);
      expect(existsSync(join(dest, 'global', 'pg_control'))).toBe(false);
      expectNothingOutside(dest);
    });

    it.each(['../escape', 'a/../../escape', '/escape-walts/x', '//escape-walts/y'])('an entry named %j: refused', async (path) => {
      const abs = path.startsWith('/');
      const b = await craft([[...BASE, { path: 'a', type: 'directory' }, { path, content: 'evil' }]]);
      const dest = join(work, `dest-name-${seq}`);
      const r = await fetch([dest, b.name]);
      expect(oneLine(r.stderr)).toMatch(/not a clean relative path/);
      expect(r.code).toBe(3);
      expect(existsSync(dest)).toBe(false);
      expectNothingOutside(dest);
      if (abs) expect(existsSync('/escape-walts')).toBe(false);
      // The same name only in the volume (manifest clean): refused by the extractor.
      const c = await craft([[...BASE, { path, content: 'evil', volumeOnly: true }]]);
      const dest2 = join(work, `dest-vname-${seq}`);
      const r2 = await fetch([dest2, c.name]);
      expect(oneLine(r2.stderr)).toMatch(/unsafe entry name/);
      expect(r2.code).toBe(3);
      expectNothingOutside(dest2);
    });

    it('a hard link entry (to /etc/passwd): refused, nothing linked', async () => {
      // packTar writes no hard links: patch a symlink header's type flag to '1' and fix its checksum.
      const header = Buffer.from(tarHeader({ path: 'hard', type: 'symlink', size: 0, mode: 0o600, mtime: MTIME, linkname: '/etc/passwd' }));
      header[156] = '1'.charCodeAt(0);
      header.fill(' ', 148, 156);
      let sum = 0;
      for (const byte of header) sum += byte;
      header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
      const base = async function* () {
        for await (const chunk of packTar(BASE.map((i) => ({ header: { path: typeOf(i) === 'directory' ? `${i.path}/` : i.path, type: typeOf(i), size: bytes(i.content).length, mode: 0o600, mtime: MTIME }, body: typeOf(i) === 'file' ? [bytes(i.content)] : undefined })))) {
          if (chunk.length === 1024 && chunk.every((x) => x === 0)) yield header; // before the end blocks
          yield chunk;
        }
      };
      const chunks: Buffer[] = [];
      for await (const c of base()) chunks.push(c);
      const b = await craft([[...BASE, { path: 'hard', content: '', manifestOnly: true }]], { rawVolume: () => chunks });
      const dest = join(work, 'dest-hard');
      const r = await fetch([dest, b.name]);
      expect(oneLine(r.stderr)).toMatch(/"hard" is a hard link/);
      expect(r.code).toBe(3);
      expect(existsSync(join(dest, 'hard'))).toBe(false);
      expectNothingOutside(dest);
    });

    it('a sentinel whose volume key points elsewhere (../../..): refused before reading it', async () => {
      const b = await craft([BASE]);
      const forged = { ...b, volumes: [{ ...b.volumes[0]!, key: `${b.volumes[0]!.key.split('/').slice(0, 2).join('/')}/../../../../../../etc/passwd` }] };
      await deps.storage.put(backupKeys.sentinel(b.name), Buffer.from(JSON.stringify(forged)));
      const dest = join(work, 'dest-key');
      const r = await fetch([dest, b.name]);
      expect(oneLine(r.stderr)).toMatch(/volume 1 has the key .*etc\/passwd.*refusing it/);
      expect(r.code).toBe(3);
      expect(existsSync(dest)).toBe(false);
    });

    it('a valid backup with a tablespace placed by --tablespace restores, the link made by walts', async () => {
      const b = await craft([[...BASE, { path: 'pg_tblspc', type: 'directory' }, { path: 'pg_tblspc/16400', type: 'directory' }, { path: 'pg_tblspc/16400/PG_15_202209061', type: 'directory' }, { path: 'pg_tblspc/16400/PG_15_202209061/f', content: 'ts data' }]], {
        tablespaces: [{ oid: 16400, name: 'fine', location: '/anywhere/ts' }],
      });
      const dest = join(work, 'dest-ts-ok');
      const tsDir = join(work, 'dest-ts-ok-space');
      const r = await fetch([dest, b.name, '--tablespace', `fine=${tsDir}`, '--no-recovery']);
      expect(r.stderr).toContain('"backup-fetch done"');
      expect(r.code).toBe(0);
      expect(links(dest)).toEqual([join(dest, 'pg_tblspc/16400')]);
      expect(readFileSync(join(tsDir, 'PG_15_202209061/f'), 'utf8')).toBe('ts data');
      expect(readFileSync(join(dest, 'tablespace_map'), 'utf8')).toBe(`16400 ${tsDir}\n`);
      expect(existsSync('/anywhere')).toBe(false);
    });
  });

  describe('a failed restore says why, with its exit code, on one line', () => {
    const bigA = randomBytes(3 << 20);
    const bigB = randomBytes(3 << 20);

    it('a corrupt file (SHA-256 differs from the manifest), two volumes in parallel: exit 3 naming the file', async () => {
      const b = await craft([
        [...BASE, { path: 'base', type: 'directory' }, { path: 'base/a', content: bigA, manifestContent: 'something else' }],
        [{ path: 'base/b', content: bigB }],
      ]);
      const dest = join(work, 'dest-corrupt-file');
      const r = await fetch([dest, b.name, '--parallel', '2']);
      expect(oneLine(r.stderr)).toMatch(/base\/a: restored content does not match the backup manifest/);
      expect(r.stderr).toContain('"error_kind":"integrity"');
      expect(r.code).toBe(3);
      expect(existsSync(join(dest, 'global', 'pg_control'))).toBe(false);
    });

    it('a corrupt volume (bytes flipped in the store): exit 3 naming the volume', async () => {
      const b = await craft([[...BASE, { path: 'base', type: 'directory' }, { path: 'base/a', content: bigA }], [{ path: 'base/b', content: bigB }]]);
      const path = join(store.dir, b.volumes[1]!.key);
      const data = readFileSync(path);
      const mid = Math.floor(data.length / 2);
      data[mid] = data[mid]! ^ 0x5a;
      writeFileSync(path, data);
      const dest = join(work, 'dest-corrupt-volume');
      const r = await fetch([dest, b.name, '--parallel', '2']);
      expect(oneLine(r.stderr)).toContain(b.volumes[1]!.key);
      expect(r.code).toBe(3);
      expect(existsSync(join(dest, 'global', 'pg_control'))).toBe(false);
    });

    it('a missing volume: exit 3 (damage, not "no such backup")', async () => {
      const b = await craft([[...BASE, { path: 'base', type: 'directory' }, { path: 'base/a', content: 'a' }], [{ path: 'base/b', content: 'b' }]]);
      unlinkSync(join(store.dir, b.volumes[1]!.key));
      const dest = join(work, 'dest-missing-volume');
      const r = await fetch([dest, b.name]);
      expect(oneLine(r.stderr)).toMatch(new RegExp(`${b.volumes[1]!.key.replace(/\./g, '\\.')} is missing from the store: the backup is damaged`));
      expect(r.code).toBe(3);
      expect(existsSync(join(dest, 'global', 'pg_control'))).toBe(false);
    });

    rootIt('a full disk at DEST (a 1 MiB tmpfs): exit 4, "disk full at DEST" (root only)', async () => {
      const b = await craft([[...BASE, { path: 'base', type: 'directory' }, { path: 'base/a', content: bigA }], [{ path: 'base/b', content: bigB }]]);
      const mnt = join(work, 'tmpfs');
      mkdirSync(mnt);
      await runOk('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0755', 'walts-test', mnt]);
      try {
        const dest = join(mnt, 'dest');
        const r = await fetch([dest, b.name, '--parallel', '2']);
        expect(oneLine(r.stderr)).toMatch(new RegExp(`disk full at ${dest.replace(/\//g, '\\/')} \\(ENOSPC\\)`));
        expect(r.stderr).toContain('"error_kind":"unavailable"');
        expect(r.code).toBe(4);
      } finally {
        await run('umount', [mnt]);
        rmSync(mnt, { recursive: true, force: true });
      }
    });
  });

  describe('signed backups: with WALTS_BACKUP_VERIFY_KEY only a backup signed by its key is restored', () => {
    let keyDir: string;
    let env: Record<string, string>;
    beforeAll(() => {
      keyDir = join(work, 'dest-keys');
      mkdirSync(keyDir);
      for (const name of ['good', 'other']) {
        const { privateKey, publicKey } = generateKeyPairSync('ed25519');
        writeFileSync(join(keyDir, `${name}.key`), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
        writeFileSync(join(keyDir, `${name}.pub`), publicKey.export({ type: 'spki', format: 'pem' }));
      }
      env = { ...store.env, WALTS_BACKUP_VERIFY_KEY: join(keyDir, 'good.pub') };
    });
    const sign = async (b: BackupSentinel, keyName: string) => {
      const bytes = await readAll((await deps.storage.get(backupKeys.sentinel(b.name))).body);
      const sig = signSentinel(bytes, loadSigningKey(join(keyDir, `${keyName}.key`)));
      await deps.storage.put(backupKeys.signature(b.name), Buffer.from(JSON.stringify(sig)));
    };

    it('signed by the verify key: restored', async () => {
      const b = await craft([BASE]);
      await sign(b, 'good');
      const r = await runWalts(['backup-fetch', join(work, 'dest-signed'), b.name], env);
      expect(r.stderr).toContain('"backup-fetch done"');
      expect(r.code).toBe(0);
    });

    it('unsigned, signed by another key, or altered after signing (a tablespace location added): exit 3, nothing written', async () => {
      const unsigned = await craft([BASE]);
      const other = await craft([BASE]);
      await sign(other, 'other');
      const altered = await craft([BASE]);
      await sign(altered, 'good');
      const forged = { ...altered, tablespaces: [{ oid: 16400, name: 'evil', location: '/anywhere/ts' }] };
      await deps.storage.put(backupKeys.sentinel(altered.name), Buffer.from(JSON.stringify(forged)));
      for (const [b, message] of [
        [unsigned, /is not signed, and WALTS_BACKUP_VERIFY_KEY requires signed backups/],
        [other, /is signed by key .*not by the verify key/],
        [altered, /the signature does not match its sentinel/],
      ] as const) {
        const dest = join(work, `dest-sig-${b.name}`);
        const r = await runWalts(['backup-fetch', dest, b.name, '--tablespace', `evil=${join(outside, 'ts')}`], env);
        expect(oneLine(r.stderr)).toMatch(message);
        expect(r.code).toBe(3);
        expect(existsSync(dest)).toBe(false);
        expectNothingOutside(dest);
      }
    });
  });

  describe('recovery settings and refusals', () => {
    let plain: BackupSentinel;
    beforeAll(async () => {
      plain = await craft([BASE]);
    });

    /** What PostgreSQL itself reads for `setting` from the restored configuration. */
    async function pgReads(dest: string, setting: string): Promise<string> {
      const r = await run(pgBin('postgres'), ['-C', setting, '-D', dest], { asUser: PG_OS_USER });
      if (r.code !== 0) throw new Error(`postgres -C ${setting} failed: ${r.stderr}`);
      return r.stdout.replace(/\n$/, '');
    }

    it.each([['rp\\x'], ['ends with a backslash\\'], ["it's 'quoted'"], ["\\'mixed\\\\'"]])('--target-name %j is read back exactly by postgres -C; archive_mode off; recovery.signal', async (name) => {
      const dest = join(work, `dest-name-${seq++}`);
      const command = `/opt/walts\\bin/walts --config '/etc/walts it''s.conf' wal-fetch %f %p`;
      const r = await fetch([dest, plain.name, '--target-name', name, '--restore-command', command]);
      expect(r.stderr).toContain('"backup-fetch done"');
      expect(r.code).toBe(0);
      expect(await pgReads(dest, 'recovery_target_name')).toBe(name);
      expect(await pgReads(dest, 'restore_command')).toBe(command);
      expect(await pgReads(dest, 'archive_mode')).toBe('off');
      expect(existsSync(join(dest, 'recovery.signal'))).toBe(true);
    });

    it('defaults: recovery to the end of the archive with walts wal-fetch, archive_mode off; --no-recovery: files only; --archive-mode=preserve', async () => {
      const dest = join(work, 'dest-defaults');
      const r = await fetch([dest, plain.name]);
      expect(r.code).toBe(0);
      expect(await pgReads(dest, 'restore_command')).toMatch(/walts' wal-fetch %f %p$|walts wal-fetch %f %p$/);
      expect(await pgReads(dest, 'recovery_target_name')).toBe('');
      expect(await pgReads(dest, 'archive_mode')).toBe('off');
      expect(existsSync(join(dest, 'recovery.signal'))).toBe(true);

      const files = join(work, 'dest-files-only');
      const f = await fetch([files, plain.name, '--no-recovery', '--archive-mode', 'preserve']);
      expect(f.code).toBe(0);
      expect(existsSync(join(files, 'recovery.signal'))).toBe(false);
      expect(existsSync(join(files, 'postgresql.auto.conf'))).toBe(false);
      expect(await pgReads(files, 'restore_command')).toBe('');
    });

    it.each([
      [['--target-time', '2027-02-30 00:00:00+00'], /--target-time: "2027-02-30 00:00:00\+00" is not a timestamp/],
      [['--restore-command', ''], /--restore-command must not be empty/],
      [['--target-name', 'a\nrestore_command = \'x\''], /--target-name must not contain a newline/],
      [['--target-lsn', '7/0'], /--target-lsn 7\/0 is beyond the archive: the archive holds no WAL segment/],
      [['--no-recovery', '--target-immediate'], /--no-recovery restores the files only/],
    ])('refuses %j with exit 2 and writes nothing', async (args, message) => {
      const dest = join(work, `dest-refused-${seq++}`);
      const r = await fetch([dest, plain.name, ...args]);
      expect(oneLine(r.stderr)).toMatch(message);
      expect(r.code).toBe(2);
      expect(existsSync(dest)).toBe(false);
    });

    it('a --target-time after the newest archived WAL: a warning before anything is written, then the restore', async () => {
      const dest = join(work, 'dest-future');
      const r = await fetch([dest, plain.name, '--target-time', '2099-01-01 00:00:00+00']);
      const lines = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as { msg: string; level: string });
      expect(lines[0]?.msg).toMatch(/--target-time 2099-01-01 00:00:00\+00 is given, but the archive holds no WAL segment: .*recovery ended before configured recovery target was reached/);
      expect(lines[0]?.level).toBe('warn');
      expect(r.code).toBe(0);
      expect(await pgReads(dest, 'recovery_target_time')).toBe('2099-01-01 00:00:00+00');
    });

    it('delete before an impossible date: exit 2', async () => {
      const r = await runWalts(['delete', 'before', '2026-02-30T00:00:00Z'], store.env);
      expect(r.stderr).toMatch(/"2026-02-30T00:00:00Z" is neither a backup name nor a time/);
      expect(r.code).toBe(2);
    });
  });
});
