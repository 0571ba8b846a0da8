/**
 * Writes a base backup's entries as size-bounded tar volumes, each written by the one tar writer
 * (`packTar`), encoded by the one encode path (`encodeTo`: plain SHA-256, codec chain) and streamed
 * into the store while it is produced. Up to `concurrency` volumes are in flight at once, each
 * streamed: memory is bounded by the encoders and the uploads' parts of those volumes, never by a
 * volume's or the database's size.
 *
 * Entries are given in backup order; each goes to the current volume, which is closed at the first
 * entry boundary past `volumeSize` tar bytes (counted from the sizes the walk saw). A volume's files
 * are read by its own task, so several volumes read, compress and upload at the same time.
 *
 * Every plain byte is hashed twice and no more: once for its file's manifest record (by `fileBody`,
 * while it is copied) and once for its volume's record in the sentinel (by `encodeTo`).
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { Readable } from 'node:stream';
import { encodeTo, type Encoded } from '../archive/encode';
import type { CodecSet } from '../codec/chain';
import type { Storage } from '../storage/storage';
import type { StoredPart } from './sentinel';
import { BLOCK_SIZE, fileBody, packTar, type FileBodyResult, type TarInput } from './tar';

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

/**
 * One entry to back up: a file read from `source`, in-memory `data`, a file streamed as `body` (exactly
 * `size` bytes, e.g. from a server's tar stream), a directory or a symlink.
 */
export interface VolumeEntry {
  readonly path: string;
  readonly type: 'file' | 'directory' | 'symlink';
  readonly mode: number;
  readonly mtime: number;
  /** Files: the size seen when listed (the tar header's size). */
  readonly size?: number;
  readonly source?: string;
  readonly data?: Buffer;
  /** Read once, in order; `add` returns only after it was read (the next entry may come from the same stream). */
  readonly body?: AsyncIterable<Buffer>;
  readonly linkname?: string;
  /**
   * Read this file only after every file of the volumes before it was read (global/pg_control: a
   * copy that holds it holds everything copied before it).
   */
  readonly last?: boolean;
}

export interface VolumeWriterOptions {
  readonly storage: Storage;
  readonly codecs: CodecSet;
  /** Key of volume `index` (1-based). */
  readonly keyFor: (index: number) => string;
  /** A volume is closed at the first entry boundary past this many tar bytes. */
  readonly volumeSize: number;
  /** Volumes read, encoded and uploaded at once (WALTS_CONCURRENCY). Default 1. */
  readonly concurrency?: number;
  readonly signal?: AbortSignal;
  /** Called with tar bytes produced, for progress. */
  readonly onBytes?: (n: number) => void;
}

/** One volume in flight: its entries arrive through a queue; its task reads, encodes and uploads them. */
class Volume {
  readonly entries: ManifestEntry[] = [];
  /** Tar bytes announced so far (headers and padded bodies), to decide where the volume ends. */
  declared = 0;
  readonly #queue: VolumeEntry[] = [];
  #closed = false;
  #wake: (() => void) | undefined;
  /** Settles once every file of this volume has been read (before the upload ends). */
  readonly read: Promise<void>;
  #readDone!: () => void;
  done!: Promise<StoredPart>;

  constructor(
    readonly index: number,
    readonly key: string,
    /** The `read` promises of every earlier volume, for an entry marked `last`. */
    private readonly before: readonly Promise<void>[],
  ) {
    this.read = new Promise((resolve) => (this.#readDone = resolve));
  }

  /** No more files of this volume will be read (all read, or its task ended early). */
  finishedReading(): void {
    this.#readDone();
  }

  push(entry: VolumeEntry): void {
    this.#queue.push(entry);
    this.declared += BLOCK_SIZE + Math.ceil((entry.size ?? entry.data?.length ?? 0) / BLOCK_SIZE) * BLOCK_SIZE;
    this.#wake?.();
  }

  close(): void {
    this.#closed = true;
    this.#wake?.();
  }

  /** The entries as `packTar` inputs, opening each file just before its turn; records the manifest. */
  async *inputs(): AsyncGenerator<TarInput, void, undefined> {
    try {
      for (;;) {
        while (this.#queue.length === 0 && !this.#closed) await new Promise<void>((resolve) => (this.#wake = resolve));
        const e = this.#queue.shift();
        if (!e) return;
        const base = { path: e.path, type: e.type, mode: e.mode, mtime: e.mtime, volume: this.index };
        if (e.type === 'directory' || e.type === 'symlink') {
          // A directory's tar name ends with '/'; the manifest keeps the plain path.
          yield { header: { path: e.type === 'directory' ? `${e.path}/` : e.path, type: e.type, size: 0, mode: e.mode, mtime: e.mtime, linkname: e.linkname } };
          this.entries.push({ ...base, size: 0, link: e.linkname });
        } else if (e.body) {
          // Bytes from a stream are hashed as they pass into the tar: what the manifest records is
          // what the volume holds (packTar checks the length against the header's size).
          const hash = createHash('sha256');
          yield { header: { path: e.path, type: 'file', size: e.size ?? 0, mode: e.mode, mtime: e.mtime }, body: hashed(e.body, hash) };
          this.entries.push({ ...base, size: e.size ?? 0, sha256: hash.digest('hex') });
        } else if (e.data) {
          yield { header: { path: e.path, type: 'file', size: e.data.length, mode: e.mode, mtime: e.mtime }, body: [e.data] };
          this.entries.push({ ...base, size: e.data.length, sha256: createHash('sha256').update(e.data).digest('hex') });
        } else {
          if (e.last) await Promise.all(this.before);
          const size = e.size ?? 0;
          let handle: fsp.FileHandle;
          try {
            handle = await fsp.open(e.source!, 'r');
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // vanished since it was listed: normal
            throw err;
          }
          try {
            // A file that shrinks while read is padded with zeros, one that grows is cut, as
            // PostgreSQL's base backups do; fileBody hashes exactly what goes into the tar.
            let copied: FileBodyResult | undefined;
            yield { header: { path: e.path, type: 'file', size, mode: e.mode, mtime: e.mtime }, body: fileBody(handle, size, { onDone: (r) => (copied = r) }) };
            this.entries.push({ ...base, size, sha256: copied!.sha256 });
          } finally {
            await handle.close();
          }
        }
      }
    } finally {
      this.finishedReading();
    }
  }
}

export class VolumeWriter {
  readonly #volumes: Volume[] = [];
  #current: Volume | undefined;
  readonly #inFlight = new Set<Promise<unknown>>();
  /** Stops every volume in flight at the first failure (or the caller's abort). */
  readonly #stop = new AbortController();
  readonly #signal: AbortSignal;
  #failure: { error: unknown } | undefined;

  constructor(private readonly options: VolumeWriterOptions) {
    this.#signal = options.signal ? AbortSignal.any([options.signal, this.#stop.signal]) : this.#stop.signal;
    // A volume task waiting for entries (or for earlier volumes) must not wait forever once stopped.
    this.#signal.addEventListener('abort', () => this.#volumes.forEach((v) => v.close()), { once: true });
  }

  /** Manifest records in backup order (volume by volume, tar order within each). */
  get entries(): ManifestEntry[] {
    return this.#volumes.flatMap((v) => v.entries);
  }

  /** Adds an entry to the current volume, first closing it if full and waiting for room if needed. */
  async add(entry: VolumeEntry): Promise<void> {
    this.#throwIfFailed();
    if (this.#current && this.#current.declared >= this.options.volumeSize) this.finishVolume();
    if (!this.#current) {
      while (this.#inFlight.size >= Math.max(1, this.options.concurrency ?? 1)) {
        await Promise.race(this.#inFlight).catch(() => undefined);
        this.#throwIfFailed();
      }
      this.#current = this.#open(entry);
    }
    const volume = this.#current;
    if (!entry.body) {
      volume.push(entry);
      return;
    }
    // A streamed body is read by the volume's task; its source (the next entry) waits until then.
    let release!: () => void;
    const consumed = new Promise<void>((resolve) => (release = resolve));
    const source = entry.body;
    volume.push({
      ...entry,
      body: (async function* () {
        try {
          yield* source;
        } finally {
          release();
        }
      })(),
    });
    await Promise.race([
      consumed,
      volume.done.then(() => {
        throw new Error(`volume ${volume.index} ended before ${entry.path} was read`);
      }),
    ]);
    this.#throwIfFailed();
  }

  /** Ends the current volume (if any): the next entry starts a new one. Does not wait for its upload. */
  finishVolume(): void {
    this.#current?.close();
    this.#current = undefined;
  }

  /** Ends the current volume and waits for every volume in flight; returns the records of all so far. */
  async settle(): Promise<StoredPart[]> {
    this.finishVolume();
    await Promise.allSettled(this.#volumes.map((v) => v.done));
    this.#throwIfFailed();
    return Promise.all(this.#volumes.map((v) => v.done));
  }

  /**
   * Stops every volume in flight (on failure or interruption) and waits until each has ended, so
   * that the stores' own clean-up (temp files, multipart uploads) has run before the caller exits.
   */
  async abort(reason: Error): Promise<void> {
    this.#failure ??= { error: reason };
    this.#stop.abort(reason);
    this.finishVolume();
    await Promise.allSettled(this.#volumes.map((v) => v.done));
  }

  #throwIfFailed(): void {
    if (this.#failure) throw this.#failure.error;
    this.#signal.throwIfAborted();
  }

  #open(first: VolumeEntry): Volume {
    const index = this.#volumes.length + 1;
    const volume = new Volume(index, this.options.keyFor(index), this.#volumes.map((v) => v.read));
    this.#volumes.push(volume);
    const { storage, codecs, onBytes } = this.options;
    const signal = this.#signal;
    const tar = packTar(volume.inputs());
    // Read ahead by at most 1 MiB (a stream made from a generator would hold 16 chunks otherwise).
    const source = Readable.from(onBytes ? counted(tar, onBytes) : tar, { objectMode: false, highWaterMark: 1 << 20 });
    let upload: Promise<void> | undefined;
    const encoded: Promise<Encoded> = encodeTo(codecs, source, (out) => (upload = storage.put(volume.key, Readable.from(out), { signal })), signal, {
      // The codec chain runs in a worker thread, except for a volume of in-memory entries
      // (backup_label, tablespace_map): a few hundred bytes, less than a worker's start-up.
      offload: first.data === undefined,
    });
    volume.done = encoded.then(
      ({ plain, storedBytes }) => ({ key: volume.key, stored_size: storedBytes, size: plain.size, sha256: plain.sha256 }),
      async (err: unknown) => {
        // The pipeline can give up before the store has: wait for the put to end, so that its
        // clean-up (a temp file, a multipart upload's abort) has run before anyone moves on.
        await upload?.catch(() => undefined);
        // The first failure is the one reported; it stops every other volume and the producer.
        if (!this.#failure) {
          this.#failure = { error: err };
          this.#stop.abort(err);
        }
        volume.close();
        throw err;
      },
    );
    volume.done.catch(() => undefined); // reported through settle() / add()
    void volume.done.finally(() => volume.finishedReading()).catch(() => undefined);
    const tracked = volume.done.finally(() => this.#inFlight.delete(tracked));
    tracked.catch(() => undefined);
    this.#inFlight.add(tracked);
    return volume;
  }
}

/** Passes chunks through, hashing them. */
async function* hashed(source: AsyncIterable<Buffer>, hash: ReturnType<typeof createHash>): AsyncGenerator<Buffer, void, undefined> {
  for await (const chunk of source) {
    hash.update(chunk);
    yield chunk;
  }
}

/** Counts tar bytes for progress as they pass. */
async function* counted(source: AsyncIterable<Buffer>, onBytes: (n: number) => void): AsyncGenerator<Buffer, void, undefined> {
  for await (const chunk of source) {
    onBytes(chunk.length);
    yield chunk;
  }
}

/** The manifest as JSON Lines: a header line, then one line per entry in tar order. */
export function manifestLines(header: Record<string, unknown>, entries: readonly ManifestEntry[]): Buffer {
  return Buffer.from([JSON.stringify(header), ...entries.map((e) => JSON.stringify(e))].join('\n') + '\n');
}
