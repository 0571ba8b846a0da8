/**
 * Writes a base backup's tar stream as size-bounded volumes, each encoded by the codec chain and
 * streamed into the store while it is produced (one volume in flight: memory is bounded by the
 * encoders and the multipart upload's parts, not by the volume or database size).
 *
 * Every entry also becomes a manifest record with the SHA-256 of exactly the bytes stored, so a
 * restore can prove each file arrived intact.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { promises as fsp } from 'node:fs';
import { PassThrough } from 'node:stream';
import { encodeAndPut, type Encoded } from '../archive/encode';
import type { CodecSet } from '../codec/chain';
import type { Storage } from '../storage/storage';
import type { StoredPart } from './sentinel';
import { fileBody, TAR_END, tarHeader, tarPadding, type TarEntryHeader } from './tar';

export interface ManifestEntry {
  readonly path: string;
  readonly type: 'file' | 'directory' | 'symlink';
  readonly mode: number;
  readonly size: number;
  readonly mtime: number;
  /** SHA-256 of the stored content (files only). */
  readonly sha256?: string;
  readonly link?: string;
  /** 1-based volume holding the entry. */
  readonly volume: number;
}

export interface VolumeWriterOptions {
  readonly storage: Storage;
  readonly codecs: CodecSet;
  /** Key of volume `index` (1-based). */
  readonly keyFor: (index: number) => string;
  /** A volume is closed at the first entry boundary past this many tar bytes. */
  readonly volumeSize: number;
  readonly signal?: AbortSignal;
  /** Called with plain bytes added, for progress. */
  readonly onBytes?: (n: number) => void;
}

interface OpenVolume {
  readonly index: number;
  readonly key: string;
  readonly tar: PassThrough;
  readonly done: Promise<Encoded>;
  bytes: number;
}

export class VolumeWriter {
  readonly entries: ManifestEntry[] = [];
  readonly volumes: StoredPart[] = [];
  #current: OpenVolume | undefined;
  #count = 0;

  constructor(private readonly options: VolumeWriterOptions) {}

  /** Adds a directory or symlink entry. */
  async addEntry(header: Omit<TarEntryHeader, 'size'> & { type: 'directory' | 'symlink' }): Promise<void> {
    const volume = await this.volumeForNextEntry();
    // A directory's tar name ends with '/'; the manifest keeps the plain path.
    await this.write(volume, tarHeader({ ...header, path: header.type === 'directory' ? `${header.path}/` : header.path, size: 0 }));
    this.entries.push({ path: header.path, type: header.type, mode: header.mode, size: 0, mtime: header.mtime, link: header.linkname, volume: volume.index });
  }

  /**
   * Adds a file with exactly `size` bytes (the size seen when it was listed): a file that shrinks
   * while read is padded with zeros, one that grows is cut, as PostgreSQL's base backups do.
   * Returns false (and adds nothing) if the file vanished before it could be opened.
   */
  async addFile(path: string, source: string, stat: { size: number; mode: number; mtime: number }): Promise<boolean> {
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(source, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    try {
      const volume = await this.volumeForNextEntry();
      await this.write(volume, tarHeader({ path, type: 'file', size: stat.size, mode: stat.mode, mtime: stat.mtime }));
      const hash = createHash('sha256');
      for await (const chunk of fileBody(handle, stat.size)) {
        hash.update(chunk);
        await this.write(volume, chunk);
      }
      await this.write(volume, tarPadding(stat.size));
      this.entries.push({ path, type: 'file', mode: stat.mode, size: stat.size, mtime: stat.mtime, sha256: hash.digest('hex'), volume: volume.index });
      return true;
    } finally {
      await handle.close();
    }
  }

  /** Adds a file whose content is in memory (backup_label, tablespace_map). */
  async addBuffer(path: string, data: Buffer, mode: number, mtime: number): Promise<void> {
    const volume = await this.volumeForNextEntry();
    await this.write(volume, tarHeader({ path, type: 'file', size: data.length, mode, mtime }));
    await this.write(volume, data);
    await this.write(volume, tarPadding(data.length));
    this.entries.push({ path, type: 'file', mode, size: data.length, mtime, sha256: createHash('sha256').update(data).digest('hex'), volume: volume.index });
  }

  /** Ends the current volume (if any): the next entry starts a new one. */
  async finishVolume(): Promise<void> {
    const v = this.#current;
    if (!v) return;
    this.#current = undefined;
    await this.write(v, TAR_END);
    v.tar.end();
    const { plain, storedBytes } = await v.done;
    this.volumes.push({ key: v.key, stored_size: storedBytes, size: plain.size, sha256: plain.sha256 });
  }

  /** Stops the upload in flight (on failure or interruption); nothing more is written. */
  abort(reason: Error): void {
    this.#current?.tar.destroy(reason);
    this.#current = undefined;
  }

  private async volumeForNextEntry(): Promise<OpenVolume> {
    if (this.#current && this.#current.bytes >= this.options.volumeSize) await this.finishVolume();
    return (this.#current ??= this.open());
  }

  private open(): OpenVolume {
    const index = ++this.#count;
    const key = this.options.keyFor(index);
    const tar = new PassThrough({ highWaterMark: 1 << 20 });
    const { storage, codecs, signal } = this.options;
    const done = encodeAndPut({ storage, codecs }, key, tar, { signal });
    // A failed upload must stop the producer at once rather than leave it waiting for 'drain'.
    done.catch((err: unknown) => tar.destroy(err as Error));
    return { index, key, tar, done, bytes: 0 };
  }

  private async write(v: OpenVolume, chunk: Buffer): Promise<void> {
    if (chunk.length === 0) return;
    v.bytes += chunk.length;
    this.options.onBytes?.(chunk.length);
    if (!v.tar.write(chunk)) {
      await Promise.race([once(v.tar, 'drain'), v.done.then(() => undefined)]);
      if (v.tar.destroyed) await v.done; // surfaces the upload's error
    }
  }
}

/** The manifest as JSON Lines: a header line, then one line per entry in tar order. */
export function manifestLines(header: Record<string, unknown>, entries: readonly ManifestEntry[]): Buffer {
  return Buffer.from([JSON.stringify(header), ...entries.map((e) => JSON.stringify(e))].join('\n') + '\n');
}
