/**
 * The copy phase of BASE_BACKUP as a Readable of messages (object mode): new archive, archive data
 * (copied out of the socket buffer), progress; then one last `end` event with where the backup ends.
 *
 * connection.ts feeds it what the server sends (`receive`, `serverCopyDone`, `finish`, `fail`). The
 * server sends data as fast as the network allows while the backup host may be slower (it compresses,
 * encrypts and uploads), so the stream pauses the transport (the socket) whenever `highWaterMark`
 * messages wait unread, and resumes it when the consumer reads again: at most one socket read arrives
 * beyond the mark, whatever the archive's size. The server's data messages are at most 32 KiB
 * (basebackup_copy.c's buffer), so the default mark holds about 2 MiB.
 */
import { Readable } from 'node:stream';
import { ProtocolError } from '../../errors';
import { TAR_END } from '../../backup/tarHeader';
import { type BackupPosition, type DataMessage, type NewArchiveMessage, type ProgressMessage, parseBaseBackupMessage } from './baseBackup';

/** Stop reading from the server, and read again. */
export interface PausableTransport {
  pause(): void;
  resume(): void;
}

export interface BackupEnd {
  readonly type: 'end';
  readonly position: BackupPosition;
}

export type BaseBackupEvent = NewArchiveMessage | DataMessage | ProgressMessage | BackupEnd;

export class BaseBackupStream extends Readable {
  #paused = false;
  #copyDone = false;
  #archives = 0;
  /** Most messages, and most archive bytes, ever buffered at once (the memory bound, for tests). */
  maxBuffered = 0;
  maxBufferedBytes = 0;
  #bufferedBytes = 0;
  /** Messages received. */
  messages = 0;
  readonly #transport: PausableTransport;

  constructor(transport: PausableTransport, options: { highWaterMark?: number } = {}) {
    super({ objectMode: true, highWaterMark: options.highWaterMark ?? 64 });
    this.#transport = transport;
    // Failures arrive whenever the server says so; the consumer gets them from iteration.
    this.on('error', () => undefined);
  }

  /** One CopyData payload (maybe a view into a reused buffer: data is copied here). */
  receive(payload: Buffer): void {
    if (this.destroyed) return;
    this.messages++;
    let m;
    try {
      m = parseBaseBackupMessage(payload);
      if (this.#copyDone) throw new ProtocolError('BASE_BACKUP: data after the end of the copy');
      if (m.type === 'manifest') throw new ProtocolError('BASE_BACKUP: the server sent a manifest that was not asked for');
      if (m.type === 'data' && this.#archives === 0) throw new ProtocolError('BASE_BACKUP: archive data before the first archive began');
    } catch (e) {
      this.destroy(e as Error);
      return;
    }
    if (m.type === 'archive') this.#archives++;
    if (m.type === 'data') {
      const data = Buffer.allocUnsafe(m.data.length);
      m.data.copy(data);
      this.#push({ type: 'data', data });
    } else this.#push(m);
  }

  serverCopyDone(): void {
    this.#copyDone = true;
  }

  /** BASE_BACKUP completed: `end` from its last result set. */
  finish(end: BackupPosition): void {
    if (this.destroyed) return;
    if (!this.#copyDone) {
      this.destroy(new ProtocolError('BASE_BACKUP completed without ending the copy'));
      return;
    }
    this.push({ type: 'end', position: end } satisfies BackupEnd);
    this.push(null);
  }

  fail(err: Error): void {
    if (!this.destroyed) this.destroy(err);
  }

  override read(size?: number): BaseBackupEvent | null {
    const ev = super.read(size) as BaseBackupEvent | null;
    if (ev?.type === 'data') this.#bufferedBytes -= ev.data.length;
    return ev;
  }

  override _read(): void {
    if (this.#paused) {
      this.#paused = false;
      this.#transport.resume();
    }
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    // Let the connection read the server's error or end (closing it ends the backup on the server).
    if (this.#paused) {
      this.#paused = false;
      this.#transport.resume();
    }
    cb(err);
  }

  #push(ev: BaseBackupEvent): void {
    if (ev.type === 'data') this.#bufferedBytes += ev.data.length;
    const room = this.push(ev);
    this.maxBuffered = Math.max(this.maxBuffered, this.readableLength);
    this.maxBufferedBytes = Math.max(this.maxBufferedBytes, this.#bufferedBytes);
    if (!room && !this.#paused) {
      this.#paused = true;
      this.#transport.pause();
    }
  }
}

/** One archive of the copy: its name, tablespace location and tar bytes. Read `data` before the next. */
export interface ServerArchive {
  readonly name: string;
  /** '' for the data directory. */
  readonly location: string;
  readonly data: AsyncIterable<Buffer>;
}

/**
 * The stream's archives, one after the other (each `data` ends where the next archive begins), with
 * progress told to `onProgress`; returns where the backup ends. The tar end blocks the server omits
 * are added, so each `data` is a whole tar archive.
 */
export async function* serverArchives(stream: AsyncIterable<BaseBackupEvent>, onProgress?: (bytes: number) => void): AsyncGenerator<ServerArchive, BackupPosition, undefined> {
  const it = stream[Symbol.asyncIterator]();
  let next = await it.next();
  for (;;) {
    if (next.done) throw new ProtocolError('BASE_BACKUP: the copy ended without its end position');
    const ev = next.value;
    if (ev.type === 'end') return ev.position;
    if (ev.type === 'progress') {
      onProgress?.(ev.bytes);
      next = await it.next();
      continue;
    }
    if (ev.type !== 'archive') throw new ProtocolError('BASE_BACKUP: archive data outside an archive');
    let finished = false;
    const data = async function* (): AsyncGenerator<Buffer> {
      for (;;) {
        next = await it.next();
        if (next.done || next.value.type === 'archive' || next.value.type === 'end') break;
        if (next.value.type === 'progress') onProgress?.(next.value.bytes);
        else yield next.value.data;
      }
      finished = true;
      yield TAR_END;
    };
    yield { name: ev.name, location: ev.location, data: data() };
    if (!finished) throw new Error(`BASE_BACKUP: archive ${ev.name} was not read to its end`);
  }
}
