/**
 * wal-receive's local staging: the segment being received is written to a file, so that a completed
 * segment goes through the one push path (ops/walPush.ts `pushFile`, which archives files) and a
 * segment of up to 1 GiB never sits in memory. The file is scratch, never a copy anyone relies on:
 * after a restart the receiver streams the segment again from its start (the slot holds it), so
 * nothing here is fsynced and a directory left by a killed receiver is simply removed.
 *
 * Where: a private directory per process, `walts-receive-<slot>-<pid>-XXXXXX`, under
 * `$WALTS_SPOOL_DIR/receive` when WALTS_SPOOL_DIR is set, else the system temp directory. Directories
 * of the same slot whose process is gone (SIGKILL) are removed at start.
 */
import { constants, promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Creates this process's staging directory (mode 0700) after removing ones that dead receivers of the slot left. */
export async function makeStagingDir(spoolDir: string | undefined, slot: string): Promise<string> {
  const root = spoolDir ? join(spoolDir, 'receive') : tmpdir();
  await fsp.mkdir(root, { recursive: true, mode: 0o700 });
  await removeDeadStaging(root, slot);
  return fsp.mkdtemp(join(root, `walts-receive-${slot}-${process.pid}-`));
}

async function removeDeadStaging(root: string, slot: string): Promise<void> {
  const re = new RegExp(`^walts-receive-${slot}-(\\d+)-[A-Za-z0-9]{6}$`);
  for (const entry of await fsp.readdir(root).catch(() => [] as string[])) {
    const pid = Number(re.exec(entry)?.[1]);
    if (!pid || pid === process.pid || alive(pid)) continue;
    const path = join(root, entry);
    const st = await fsp.lstat(path).catch(() => undefined);
    // Only our own directories: the temp directory is shared with other users.
    if (!st?.isDirectory() || (process.getuid && st.uid !== process.getuid())) continue;
    await fsp.rm(path, { recursive: true, force: true }).catch(() => undefined);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** One segment being received: `<dir>/<segment>.receiving`, renamed to `<dir>/<segment>` once whole. */
export class StagedSegment {
  #size = 0;
  private constructor(
    readonly name: string,
    readonly path: string,
    private readonly handle: fsp.FileHandle,
  ) {}

  static async create(dir: string, name: string): Promise<StagedSegment> {
    const path = join(dir, `${name}.receiving`);
    const handle = await fsp.open(path, constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC, 0o600);
    return new StagedSegment(name, path, handle);
  }

  /** Bytes written from the segment's start. */
  get size(): number {
    return this.#size;
  }

  /** Appends (the stream is contiguous: callers check, this only writes). */
  async append(data: Buffer): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.handle.write(data, done, data.length - done, this.#size + done);
      done += bytesWritten;
    }
    this.#size += data.length;
  }

  /** A read-only handle on what is staged (the caller closes it). */
  openForRead(): Promise<fsp.FileHandle> {
    return fsp.open(this.path, 'r');
  }

  /** The segment is whole: close and rename it to its WAL file name; returns the new path. */
  async complete(dir: string): Promise<string> {
    await this.handle.close();
    const done = join(dir, this.name);
    await fsp.rename(this.path, done);
    return done;
  }

  async discard(): Promise<void> {
    await this.handle.close().catch(() => undefined);
    await fsp.rm(this.path, { force: true });
  }
}
