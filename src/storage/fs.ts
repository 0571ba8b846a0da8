import { createHash, randomBytes } from 'node:crypto';
import { constants, createReadStream, promises as fsp } from 'node:fs';
import { basename, dirname, join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { ConfigError, NotFoundError, ObjectExistsError, UnavailableError } from '../errors';
import { BIND, bound, memoHash, stripBinding, type ObjectStat } from './fsSideFile';
import { assertValidKey, META_SUFFIX, type ObjectInfo, type PutOptions, type Storage, type StoredObject } from './storage';

const TMP_PREFIX = '.tmp.';

/**
 * Points between the steps of a put, for tests that interleave writers deterministically (a hook
 * may wait on a promise the test controls). Production code passes none.
 */
export interface FsStorageHooks {
  /** The object's directory exists (a concurrent delete may remove it right now). */
  afterMkdir?(key: string): Promise<void> | void;
  /** Object and side file are written to their temp files, nothing is published. */
  beforePublish?(key: string): Promise<void> | void;
  /** The object is published (link or rename done), its side file not yet. */
  afterObject?(key: string): Promise<void> | void;
  /** Object and side file are published, the directory not yet fsynced. */
  afterMeta?(key: string): Promise<void> | void;
}

/**
 * A store in a local or network (NFS) directory. How it keeps the Storage contract:
 * - atomic publish: the object and its side file are written to hidden temp files beside the
 *   target and fsynced; then the object is published with link(2) (create-if-absent: it fails with
 *   EEXIST atomically, also on NFS) or rename(2), and only then the side file, and the directory is
 *   fsynced. The object's link is the single decision point: a writer that loses it publishes nothing.
 * - the side file `<key>.meta.json` is bound to its object: it records the object's size, inode and
 *   SHA-256 of the stored bytes, and describes the object only when they match. A side file left by
 *   another object (a crash, an overwrite in progress) is ignored.
 * - between the two publish steps (or after a crash there) the object has no side file yet, but its
 *   writer's temp side file, fsynced before the link, is beside it: any reader that finds an object
 *   without a bound side file looks for a bound temp side file, uses it and puts it in place. So a
 *   second writer learns the first one's content at once, and a crash needs no manual repair.
 * - delete removes directories it leaves empty; a put whose directory vanished recreates it.
 * - the root directory is never created: it must exist (mounted, or made with mkdir before `walts
 *   init`). A missing root is an error for every call, never "not found" or an empty listing, so an
 *   unmounted network share cannot pass for an archive that lacks a key, or quietly become a new
 *   archive on the local disk.
 */
export class FsStorage implements Storage {
  readonly conditionalCreate = 'enforced' as const;
  #owner: Promise<Owner | undefined> | undefined;
  readonly description: string;

  constructor(
    readonly root: string,
    private readonly hooks: FsStorageHooks = {},
  ) {
    this.description = `file://${root}`;
  }

  async put(key: string, body: Buffer | Readable, options: PutOptions = {}): Promise<void> {
    assertValidKey(key);
    const path = this.path(key);
    const dir = dirname(path);
    const owner = await this.owner();
    const objTmp = tempName(path);
    const metaTmp = options.metadata ? tempName(path + META_SUFFIX) : undefined;
    try {
      const written = await this.writeTemp(key, dir, objTmp, body, options.signal, owner, metaTmp !== undefined);
      if (metaTmp) {
        const side = { ...options.metadata, [BIND.size]: String(written.size), [BIND.sha256]: written.sha256, [BIND.ino]: String(written.ino) };
        await this.io(`write ${key}`, () => writeDurably(metaTmp, Buffer.from(JSON.stringify(side)), options.signal, owner));
      }
      await this.hooks.beforePublish?.(key);
      await this.io(`publish ${key}`, async () => {
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
      });
      await this.hooks.afterObject?.(key);
      await this.io(`publish metadata of ${key}`, async () => {
        if (metaTmp) await fsp.rename(metaTmp, path + META_SUFFIX);
        else await fsp.rm(path + META_SUFFIX, { force: true });
      });
      await this.hooks.afterMeta?.(key);
      await this.io(`sync directory of ${key}`, () => fsyncDir(dir));
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
      const metadata = await this.readMeta(key, stat, handle);
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
      return { key, size: stat.size, lastModified: stat.mtime, metadata: await this.readMeta(key, stat) };
    } catch (err) {
      if (err instanceof UnavailableError) throw err;
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        const missing = await this.rootMissing();
        if (missing) throw missing;
        return undefined; // also: deleted while being read
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
    const dirs = new Set<string>();
    for (const key of keys) {
      assertValidKey(key);
      const path = this.path(key);
      await this.io(`delete ${key}`, async () => {
        await fsp.rm(path, { force: true });
        await fsp.rm(path + META_SUFFIX, { force: true });
      });
      dirs.add(dirname(path));
    }
    // Deepest first, so a parent is tried after its children.
    for (const dir of [...dirs].sort((a, b) => b.length - a.length)) await this.pruneEmpty(dir);
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
        const info = await this.statFile(key);
        if (info) yield info;
      }
    }
  }

  /**
   * Run as root (an operator running backup-push or delete by hand), walts gives what it creates to
   * the owner of the store directory, so that the archiver (the postgres user) can still write there.
   */
  private async owner(): Promise<Owner | undefined> {
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

  /** Size and date of a listed file, without its metadata; undefined if it went away meanwhile. */
  private async statFile(key: string): Promise<ObjectInfo | undefined> {
    try {
      const stat = await fsp.stat(this.path(key));
      return stat.isFile() ? { key, size: stat.size, lastModified: stat.mtime, metadata: {} } : undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw this.unavailable(`stat ${key}`, err);
    }
  }

  /**
   * The metadata of the object at `key` whose stat is `stat`: its side file if bound to it, else a
   * bound temp side file of the writer that published it (which is then put in place), else none.
   */
  private async readMeta(key: string, stat: ObjectStat, handle?: fsp.FileHandle): Promise<Record<string, string>> {
    const path = this.path(key);
    const hash = memoHash(handle, path);
    const side = await this.readSide(path + META_SUFFIX, `read metadata of ${key}`);
    if (side && (await bound(side, stat, hash))) return stripBinding(side);
    let names: string[];
    try {
      names = await fsp.readdir(dirname(path));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw this.unavailable(`list ${dirname(key) || '/'}`, err);
      names = [];
    }
    const tail = `.${basename(path)}${META_SUFFIX}`;
    for (const name of names.filter((n) => n.startsWith(TMP_PREFIX) && n.endsWith(tail) && n.length === TMP_PREFIX.length + 12 + tail.length)) {
      const candidate = await this.readSide(join(dirname(path), name), `read metadata of ${key}`);
      // A temp side file carries a binding only when walts wrote it; legacy ones never count here.
      if (!candidate?.[BIND.sha256] || !(await bound(candidate, stat, hash))) continue;
      await this.adopt(path + META_SUFFIX, candidate);
      return stripBinding(candidate);
    }
    // The writer may have renamed its temp side file into place between the two reads above.
    const again = await this.readSide(path + META_SUFFIX, `read metadata of ${key}`);
    if (again && (await bound(again, stat, hash))) return stripBinding(again);
    return {};
  }

  /**
   * Puts an adopted side file in place, best effort: a read-only store still gets the right answer,
   * and the writer that owns it, if still running, renames an identical file over it.
   */
  private async adopt(metaPath: string, side: Record<string, string>): Promise<void> {
    const tmp = tempName(metaPath);
    try {
      await writeDurably(tmp, Buffer.from(JSON.stringify(side)), undefined, await this.owner());
      await fsp.rename(tmp, metaPath);
    } catch {
      // Nothing to repair with: the next reader looks again.
    } finally {
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
    }
  }

  private async readSide(path: string, what: string): Promise<Record<string, string> | undefined> {
    try {
      const parsed: unknown = JSON.parse(await fsp.readFile(path, 'utf8'));
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return undefined;
      const entries = Object.entries(parsed as Record<string, unknown>).filter((e): e is [string, string] => typeof e[1] === 'string');
      return Object.fromEntries(entries);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      if (err instanceof SyntaxError) return undefined; // a torn side file proves nothing: treat as absent
      throw this.unavailable(what, err);
    }
  }

  /**
   * Writes the object's temp file, creating its directory. A concurrent delete may remove an empty
   * directory between the mkdir and the create of the temp file; then the directory is made again
   * (once the temp file exists, the directory is not empty and stays).
   */
  private async writeTemp(key: string, dir: string, tmp: string, body: Buffer | Readable, signal: AbortSignal | undefined, owner: Owner | undefined, digest: boolean): Promise<Written> {
    for (let attempt = 1; ; attempt++) {
      let step = `create directory for ${key}`;
      try {
        await this.mkdirs(dir, owner);
        await this.hooks.afterMkdir?.(key);
        step = `write ${key}`;
        return await writeDurably(tmp, body, signal, owner, digest);
      } catch (err) {
        // A stream body is consumed only once the file is open, so ENOENT (from mkdir -p or the
        // open) is always retryable; a directory that keeps vanishing is a real problem after a few tries.
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          const missing = await this.rootMissing(); // an unmounted share is not a pruned folder
          if (missing) throw missing;
          if (attempt < 5) continue;
        }
        if ((err as Error).name === 'AbortError') throw err;
        throw this.unavailable(step, err);
      }
    }
  }

  /** Removes `dir` and its parents while they are empty, never the store root. */
  private async pruneEmpty(dir: string): Promise<void> {
    const root = join(this.root, '.');
    for (let d = dir; d !== root && d.startsWith(root + '/'); d = dirname(d)) {
      try {
        await fsp.rmdir(d);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') continue; // a concurrent delete got there first
        if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'EBUSY') return;
        throw this.unavailable(`remove empty directory ${d.slice(root.length + 1)}`, err);
      }
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
      if (err instanceof ObjectExistsError || err instanceof UnavailableError || (err as Error).name === 'AbortError') throw err;
      if ((notFoundKey || rootCheck) && (err as NodeJS.ErrnoException).code === 'ENOENT') {
        const missing = await this.rootMissing();
        if (missing) throw missing;
        if (notFoundKey) throw new NotFoundError(`${notFoundKey} not found in ${this.description}`);
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

type Owner = { uid: number; gid: number };

interface Written {
  readonly size: number;
  readonly sha256: string;
  readonly ino: number;
}

/**
 * Writes and fsyncs a new file. With `digest`, also the SHA-256 of what was written (the side file's
 * binding needs it); objects without metadata (backup volumes) skip that pass over their bytes.
 */
async function writeDurably(path: string, body: Buffer | Readable, signal?: AbortSignal, owner?: Owner, digest = false): Promise<Written> {
  const handle = await fsp.open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  const hash = digest ? createHash('sha256') : undefined;
  let size = 0;
  try {
    if (owner) await handle.chown(owner.uid, owner.gid);
    if (Buffer.isBuffer(body)) {
      hash?.update(body);
      size = body.length;
      await handle.writeFile(body, { signal });
    } else {
      // Plain writes, not a write stream on the handle: such a stream keeps a hold on the handle
      // that makes close() wait forever.
      for await (const chunk of body) {
        signal?.throwIfAborted();
        hash?.update(chunk as Buffer);
        size += (chunk as Buffer).length;
        await handle.write(chunk as Buffer);
      }
    }
    await handle.sync();
    const ino = (await handle.stat()).ino;
    return { size, sha256: hash?.digest('hex') ?? '', ino };
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
