/**
 * A stream stage whose work runs in a worker thread (`codecWorker.ts`): the codec chain of a large
 * object (a backup volume), so that compression, encryption and the plain SHA-256 use a second core
 * while this thread reads, tars, hashes files, uploads or extracts.
 *
 * Bytes cross in batches, each copied once into a buffer of its own and transferred (never a view
 * on memory someone else holds). Both directions are windowed: at most WINDOW batches wait on each
 * side, so memory stays bounded by a few batches whatever the object's size.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { Worker } from 'node:worker_threads';
import type { CodecSet } from '../codec/chain';
import type { CodecSpec } from '../codec/make';
import { ConfigError, CryptoError, IntegrityError, UnavailableError } from '../errors';

export type CodecJob =
  | { readonly kind: 'encode'; readonly spec: CodecSpec }
  | { readonly kind: 'decode'; readonly spec: CodecSpec; readonly codecs: readonly string[]; readonly unauthenticatedStream: boolean; readonly plainVerified: boolean };

/** What the worker reports at the end: plain size and SHA-256, and the encoded size (encode only). */
export interface JobResult {
  readonly plainBytes: number;
  readonly sha256: string;
  readonly storedBytes: number;
}

/** Messages between the two threads. */
export type ToWorker = { t: 'data'; bufs: Uint8Array[] } | { t: 'end' } | { t: 'ack' };
export type FromWorker = { t: 'data'; bufs: Uint8Array[] } | { t: 'ack' } | { t: 'done'; result: JobResult } | { t: 'error'; error: SerializedError };
export interface SerializedError {
  name: string;
  message: string;
  transient?: boolean;
}

/** Batches in flight per direction, and the size a batch is made up to. */
export const WINDOW = 2;
const BATCH = { encode: 1 << 20, decode: 1 << 20 } as const;

const WORKER_FILE = join(__dirname, 'codecWorker.js');
/** Compiled code only (dist/): under ts-node/ts-jest there is no worker file and the work stays here. */
const workerAvailable = existsSync(WORKER_FILE);

/** Whether `codecs` can run in a worker: made by `makeCodecs` (so re-makeable) and running compiled. */
export function canOffload(codecs: CodecSet): boolean {
  return workerAvailable && codecs.spec !== undefined;
}

export class WorkerStage extends Duplex {
  /** Set when the worker finished: plain facts and stored size. */
  result: JobResult | undefined;
  readonly #worker: Worker;
  readonly #batch: number;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** Input batches the worker has not consumed yet. */
  #unacked = 0;
  #waiting: (() => void) | undefined;
  /** Output batches pushed while the reader was full: acknowledged when it asks for more. */
  #owed = 0;
  #finished = false;

  constructor(job: CodecJob) {
    // Object mode on the readable side: each batch is handed on as it came, never concatenated
    // with the next (a byte-mode read() would copy everything buffered into one buffer).
    super({ readableObjectMode: true, readableHighWaterMark: WINDOW });
    this.#batch = BATCH[job.kind];
    this.#worker = new Worker(WORKER_FILE, { workerData: job });
    this.#worker.on('message', (m: FromWorker) => this.#onMessage(m));
    this.#worker.on('error', (err) => this.destroy(err));
    this.#worker.on('exit', (code) => {
      if (!this.#finished && !this.destroyed) this.destroy(new Error(`codec worker exited with code ${code} before it finished`));
    });
  }

  #onMessage(m: FromWorker): void {
    if (this.destroyed) return;
    if (m.t === 'ack') {
      this.#unacked--;
      const wake = this.#waiting;
      this.#waiting = undefined;
      wake?.();
    } else if (m.t === 'data') {
      let room = true;
      for (const b of m.bufs) room = this.push(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
      if (room) this.#post({ t: 'ack' });
      else this.#owed++;
    } else if (m.t === 'done') {
      this.result = m.result;
      this.#finished = true;
      this.push(null);
      void this.#worker.terminate();
    } else {
      this.destroy(revive(m.error));
    }
  }

  #post(m: ToWorker, transfer?: ArrayBuffer[]): void {
    this.#worker.postMessage(m, transfer);
  }

  override _read(): void {
    for (; this.#owed > 0; this.#owed--) this.#post({ t: 'ack' });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    if (this.#pendingBytes < this.#batch) return done();
    this.#flush(done);
  }

  override _final(done: (err?: Error | null) => void): void {
    this.#flush((err) => {
      if (err) return done(err);
      this.#post({ t: 'end' });
      done();
    });
  }

  /** Sends what is pending as one batch, once the worker has room for it. */
  #flush(done: (err?: Error | null) => void): void {
    const send = (): void => {
      if (this.destroyed) return done(new Error('codec worker stage destroyed'));
      if (this.#pendingBytes > 0) {
        const { bufs, transfer } = forTransfer(this.#pending);
        this.#pending = [];
        this.#pendingBytes = 0;
        this.#unacked++;
        this.#post({ t: 'data', bufs }, transfer);
      }
      done();
    };
    if (this.#unacked < WINDOW) return send();
    this.#waiting = send;
  }

  override _destroy(err: Error | null, done: (err: Error | null) => void): void {
    const wake = this.#waiting;
    this.#waiting = undefined;
    wake?.();
    void this.#worker.terminate();
    done(err);
  }
}

/**
 * Chunks as views to post, in order, and the buffers to transfer. A chunk that is the whole of a
 * large buffer (a file read, a decoded LZ4 block: each allocated for that chunk alone) is
 * transferred as it is, without a copy; anything else (tar headers from the shared pool, views on a
 * larger block) is copied into a buffer of its own, consecutive small chunks into one.
 */
export function forTransfer(chunks: readonly Uint8Array[]): { bufs: Uint8Array[]; transfer: ArrayBuffer[] } {
  const bufs: Uint8Array[] = [];
  const transfer: ArrayBuffer[] = [];
  let copies: Uint8Array[] = [];
  let copyBytes = 0;
  const flushCopies = (): void => {
    if (copyBytes === 0) return;
    const own = new Uint8Array(copyBytes);
    let at = 0;
    for (const c of copies) {
      own.set(c, at);
      at += c.length;
    }
    bufs.push(own);
    transfer.push(own.buffer);
    copies = [];
    copyBytes = 0;
  };
  for (const c of chunks) {
    if (c.byteOffset === 0 && c.byteLength === c.buffer.byteLength && c.byteLength >= 64 << 10 && c.buffer instanceof ArrayBuffer && !transfer.includes(c.buffer)) {
      flushCopies();
      bufs.push(c);
      transfer.push(c.buffer);
    } else {
      copies.push(c);
      copyBytes += c.length;
    }
  }
  flushCopies();
  return { bufs, transfer };
}

/** Errors cross threads as plain data; walts' own kinds come back as themselves. */
export function serializeError(err: unknown): SerializedError {
  const e = err as Error & { transient?: boolean };
  return { name: e?.constructor?.name ?? 'Error', message: e?.message ?? String(err), transient: e?.transient };
}

function revive(e: SerializedError): Error {
  switch (e.name) {
    case 'CryptoError':
      return new CryptoError(e.message);
    case 'IntegrityError':
      return new IntegrityError(e.message);
    case 'ConfigError':
      return new ConfigError(e.message);
    case 'UnavailableError':
      return new UnavailableError(e.message, { transient: e.transient === true });
    default: {
      const err = new Error(e.message);
      err.name = e.name;
      return err;
    }
  }
}
