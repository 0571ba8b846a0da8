import { randomBytes } from 'node:crypto';
import { constants, createReadStream, promises as fsp } from 'node:fs';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { ConfigError, NotFoundError, ObjectExistsError, UnavailableError } from '../errors';
import { assertValidKey, META_SUFFIX, type ObjectInfo, type PutOptions, type Storage, type StoredObject } from './storage';

const TMP_PREFIX = '.tmp.';

/**
 * A store in a local or network (NFS) directory. How it keeps the Storage contract:
 * - atomic publish: write a hidden temp file beside the target, fsync it, then rename (or link, for
 *   create-if-absent: link(2) fails with EEXIST atomically, also on NFS), then fsync the directory;
 * - metadata lives in `<key>.meta.json`, published before the object, so an object never appears
 *   without its metadata. A crash can leave a metadata file without an object: that key counts as
 *   absent and the next put replaces it.
 */
export class FsStorage implements Storage {
  readonly conditionalCreate = 'enforced' as const;
  #owner: Promise<{ uid: number; gid: number } | undefined> | undefined;
  readonly description: string;

  constructor(readonly root: string) {
    this.description = `file://${root}`;
  }

  async put(key: string, body: Buffer | Readable, options: PutOptions = {}): Promise<void> {
    assertValidKey(key);
    const path = this.path(key);
    const dir = dirname(path);
    const owner = await this.owner();
    await this.io(`create directory for ${key}`, () => this.mkdirs(dir, owner));
    const objTmp = tempName(path);
    const metaTmp = options.metadata ? tempName(path + META_SUFFIX) : undefined;
    try {
      await this.io(`write ${key}`, async () => {
        await writeDurably(objTmp, body, options.signal, owner);
        if (metaTmp) await writeDurably(metaTmp, Buffer.from(JSON.stringify(options.metadata)), options.signal, owner);
      });
      if (options.ifAbsent && (await exists(path))) throw new ObjectExistsError(key);
      await this.io(`publish ${key}`, async () => {
        if (metaTmp) await fsp.rename(metaTmp, path + META_SUFFIX);
        else await fsp.rm(path + META_SUFFIX, { force: true });
        if (options.ifAbsent) {
          try {
            await fsp.link(objTmp, path);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new ObjectExistsError(key);
            throw err;
          }
        } else {
          await fsp.rename(objTmp, path);
        }
        await fsyncDir(dir);
      });
    } finally {
      await fsp.rm(objTmp, { force: true });
      if (metaTmp) await fsp.rm(metaTmp, { force: true });
    }
  }

  async get(key: string): Promise<StoredObject> {
    assertValidKey(key);
    const path = this.path(key);
    const handle = await this.io(`open ${key}`, () => fsp.open(path, 'r'), key);
    try {
      const stat = await handle.stat();
      const metadata = await this.readMeta(key);
      const body = createReadStream('', { fd: handle, autoClose: true });
      return { key, size: stat.size, lastModified: stat.mtime, metadata, body };
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    assertValidKey(key);
    try {
      const stat = await fsp.stat(this.path(key));
      if (!stat.isFile()) return undefined;
      return { key, size: stat.size, lastModified: stat.mtime, metadata: await this.readMeta(key) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw this.unavailable(`stat ${key}`, err);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const slash = prefix.lastIndexOf('/');
    const startDir = slash < 0 ? '' : prefix.slice(0, slash);
    yield* this.walk(startDir, prefix);
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (const key of keys) {
      assertValidKey(key);
      const path = this.path(key);
      await this.io(`delete ${key}`, async () => {
        await fsp.rm(path, { force: true });
        await fsp.rm(path + META_SUFFIX, { force: true });
      });
    }
  }

  async close(): Promise<void> {}

  /**
   * Depth-first walk in global key order: sorting entries by `name + '/'` for directories puts
   * `a.b` before `a/x`, exactly as the keys compare.
   */
  private async *walk(dirKey: string, prefix: string): AsyncIterable<ObjectInfo> {
    let entries;
    try {
      entries = await fsp.readdir(dirKey ? this.path(dirKey) : this.root, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw this.unavailable(`list ${dirKey || '/'}`, err);
    }
    const sorted = entries
      .filter((e) => !e.name.startsWith(TMP_PREFIX) && !(e.isFile() && e.name.endsWith(META_SUFFIX)))
      .map((e) => ({ e, sortKey: e.name + (e.isDirectory() ? '/' : '') }))
      .sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0));
    for (const { e } of sorted) {
      const key = dirKey ? `${dirKey}/${e.name}` : e.name;
      if (e.isDirectory()) {
        const asDir = key + '/';
        if (asDir.startsWith(prefix) || prefix.startsWith(asDir)) yield* this.walk(key, prefix);
      } else if (e.isFile() && key.startsWith(prefix)) {
        const info = await this.head(key);
        if (info) yield { ...info, metadata: {} };
      }
    }
  }

  /**
   * Run as root (an operator running backup-push or delete by hand), walts gives what it creates to
   * the owner of the store directory, so that the archiver (the postgres user) can still write there.
   */
  private async owner(): Promise<{ uid: number; gid: number } | undefined> {
    if (process.getuid?.() !== 0) return undefined;
    this.#owner ??= fsp.stat(this.root).then(
      (st) => (st.uid === 0 ? undefined : { uid: st.uid, gid: st.gid }),
      () => undefined,
    );
    return this.#owner;
  }

  private async mkdirs(dir: string, owner: { uid: number; gid: number } | undefined): Promise<void> {
    const first = await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    if (!first || !owner) return;
    // Every directory mkdir created, from the first one down to `dir`.
    for (let d = dir; d.length >= first.length; d = dirname(d)) await fsp.chown(d, owner.uid, owner.gid);
  }

  private path(key: string): string {
    return join(this.root, ...key.split('/'));
  }

  private async readMeta(key: string): Promise<Record<string, string>> {
    try {
      const parsed: unknown = JSON.parse(await fsp.readFile(this.path(key) + META_SUFFIX, 'utf8'));
      return parsed && typeof parsed === 'object' ? (parsed as Record<string, string>) : {};
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
      if (err instanceof SyntaxError) return {}; // a torn side file proves nothing: treat as absent
      throw this.unavailable(`read metadata of ${key}`, err);
    }
  }

  /** Runs a filesystem call, turning ENOENT on `notFoundKey` into NotFoundError and the rest into UnavailableError. */
  private async io<T>(what: string, fn: () => Promise<T>, notFoundKey?: string): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof ObjectExistsError || (err as Error).name === 'AbortError') throw err;
      if (notFoundKey && (err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new NotFoundError(`${notFoundKey} not found in ${this.description}`);
      }
      throw this.unavailable(what, err);
    }
  }

  /**
   * Permissions and a read-only mount are configuration (exit 2, no retry); a full disk is said as
   * such (exit 4, no retry: it will not empty itself within a retry budget); the rest may pass.
   */
  private unavailable(what: string, err: unknown): UnavailableError | ConfigError {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    const where = `${this.description}: cannot ${what}`;
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
      return new ConfigError(`${where}: ${code === 'EROFS' ? 'the store is on a read-only file system' : 'permission denied'} (${code}); check WALTS_STORE and the directory's owner and mode`);
    }
    if (code === 'ENOSPC' || code === 'EDQUOT') {
      return new UnavailableError(`${where}: the store's disk is full (${code})`, { transient: false, cause: err });
    }
    const transient = !['ENOTDIR', 'EISDIR'].includes(code);
    return new UnavailableError(`${where}: ${(err as Error).message}`, { transient, cause: err });
  }
}

function tempName(path: string): string {
  return join(dirname(path), `${TMP_PREFIX}${randomBytes(6).toString('hex')}.${path.slice(dirname(path).length + 1)}`);
}

async function writeDurably(path: string, body: Buffer | Readable, signal?: AbortSignal, owner?: { uid: number; gid: number }): Promise<void> {
  const handle = await fsp.open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  try {
    if (owner) await handle.chown(owner.uid, owner.gid);
    if (Buffer.isBuffer(body)) {
      await handle.writeFile(body, { signal });
    } else {
      // Plain writes, not a write stream on the handle: such a stream keeps a hold on the handle
      // that makes close() wait forever.
      for await (const chunk of body) {
        signal?.throwIfAborted();
        await handle.write(chunk as Buffer);
      }
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await fsp.open(dir, 'r');
  try {
    await handle.sync();
  } catch (err) {
    // Some network filesystems refuse fsync on a directory; the rename is still ordered after the data sync.
    if (!['EINVAL', 'EISDIR', 'EBADF'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
  } finally {
    await handle.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await fsp.stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
