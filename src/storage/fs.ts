import { randomBytes } from 'node:crypto';
import { constants, createReadStream, promises as fsp } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { NotFoundError, ObjectExistsError, UnavailableError } from '../errors';
import { assertValidKey, META_SUFFIX, type ObjectInfo, type PutOptions, type Storage, type StoredObject } from './storage';

const TMP_PREFIX = '.tmp.';

/**
 * A store in a local or network (NFS) directory. How it keeps the Storage contract:
 * - atomic publish: write a hidden temp file beside the target, fsync it, then rename (or link, for
 *   create-if-absent: link(2) fails with EEXIST atomically, also on NFS), then fsync the directory;
 * - metadata lives in `<key>.meta.json`, published before the object, so an object never appears
 *   without its metadata. A crash can leave a metadata file without an object: that key counts as
 *   absent and the next put replaces it.
 * - the root directory is never created: it must exist (mounted, or made with mkdir before `walts
 *   init`). A missing root is an error for every call, never "not found" or an empty listing, so an
 *   unmounted network share cannot pass for an archive that lacks a key, or quietly become a new
 *   archive on the local disk.
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
    await this.io(`create directory for ${key}`, () => this.mkdirs(dir, owner), undefined, true);
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
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        const missing = await this.rootMissing();
        if (missing) throw missing;
        return undefined;
      }
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
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        const missing = await this.rootMissing();
        if (missing) throw missing;
        return;
      }
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

  /**
   * Creates the folders between the root and `dir`, one level at a time and never the root itself:
   * if the root is missing (an unmounted share), the first mkdir fails with ENOENT.
   */
  private async mkdirs(dir: string, owner: { uid: number; gid: number } | undefined): Promise<void> {
    if (await isDirectory(dir)) return; // the usual case: one stat
    let d = this.root;
    for (const part of relative(this.root, dir).split(sep).filter(Boolean)) {
      d = join(d, part);
      try {
        await fsp.mkdir(d, { mode: 0o700 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw err;
      }
      if (owner) await fsp.chown(d, owner.uid, owner.gid);
    }
  }

  /** The error for a root directory that is not there (undefined when it is, or cannot be told). */
  private async rootMissing(): Promise<UnavailableError | undefined> {
    let problem: string;
    try {
      if ((await fsp.stat(this.root)).isDirectory()) return undefined;
      problem = 'is not a directory';
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') return undefined;
      problem = 'does not exist';
    }
    return new UnavailableError(
      `${this.description}: the store directory ${this.root} ${problem} (walts never creates it: mount the share or create the directory, then run walts init)`,
      { transient: false },
    );
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

  /**
   * Runs a filesystem call, turning ENOENT on `notFoundKey` into NotFoundError (only while the root
   * exists; ENOENT with `rootCheck` into the missing-root error) and the rest into UnavailableError.
   */
  private async io<T>(what: string, fn: () => Promise<T>, notFoundKey?: string, rootCheck = false): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof ObjectExistsError || (err as Error).name === 'AbortError') throw err;
      if ((notFoundKey || rootCheck) && (err as NodeJS.ErrnoException).code === 'ENOENT') {
        const missing = await this.rootMissing();
        if (missing) throw missing;
        if (notFoundKey) throw new NotFoundError(`${notFoundKey} not found in ${this.description}`);
      }
      throw this.unavailable(what, err);
    }
  }

  private unavailable(what: string, err: unknown): UnavailableError {
    const code = (err as NodeJS.ErrnoException).code;
    // Running out of space or permissions will not fix itself within a retry budget.
    const transient = !['EACCES', 'EPERM', 'ENOSPC', 'EROFS', 'EDQUOT', 'ENOTDIR', 'EISDIR'].includes(code ?? '');
    return new UnavailableError(`${this.description}: cannot ${what}: ${(err as Error).message}`, { transient, cause: err });
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

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await fsp.stat(path)).isDirectory();
  } catch {
    return false;
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
