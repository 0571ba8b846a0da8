/**
 * The CopyBoth phase of START_REPLICATION ... PHYSICAL as a Readable of messages (object mode):
 * XLogData (its `data` copied out of the socket buffer), keepalives, and, when the server ends a
 * historic timeline, one last `end-of-timeline` event naming the next timeline; then the stream ends.
 *
 * How it works:
 * - connection.ts feeds it what the server sends (`receive`, `serverCopyDone`, `finish`, `fail`);
 *   everything the stream sends goes through a narrow CopyBothTransport, which unit tests fake.
 * - Backpressure: when the readable buffer holds `highWaterMark` messages the transport (the socket)
 *   is paused, and resumed when the consumer reads again. At most one socket read (64 KiB, or one
 *   message of at most 128 KiB: MAX_SEND_SIZE in walsender.c) arrives beyond the mark, so memory
 *   stays bounded whatever the consumer's speed. Status updates are still sent while paused (the
 *   walsender gives up after wal_sender_timeout without one), so the caller's timer keeps it alive.
 * - Positions: the consumer says what it has written and flushed (`report`); those go to the server
 *   on every tick of the caller's timer, whenever the server asks (a keepalive with reply requested),
 *   and once more before a client-initiated stop. The slot of a physical receiver advances to the
 *   flush position reported, so a caller must only report as flushed what is durable.
 * - Contiguity: the walsender sends WAL in order from the requested start; an XLogData that does not
 *   start where the previous one ended is a ProtocolError (writing it would leave a hole or overwrite).
 * - Ending: stop() ends the copy from this side; destroying the stream (a consumer that gives up,
 *   `break` out of `for await` unless iterating with `iterator({ destroyOnReturn: false })`) does too.
 */
import { Readable } from 'node:stream';
import { ProtocolError } from '../../errors';
import type { Lsn } from '../walName';
import { formatLsn } from '../walName';
import { type PrimaryKeepalive, type XLogData, parseServerStreamMessage, pgTimeFromUnixMs, serializeStandbyStatus } from './messages';
import type { TimelineEnd } from './commands';

/** What the stream needs from the connection. */
export interface CopyBothTransport {
  /** Send one CopyData message with this payload. */
  sendCopyData(payload: Buffer): void;
  /** Send CopyDone: this side sends nothing more in this copy. */
  sendCopyDone(): void;
  /** Stop reading from the server (backpressure), and read again. */
  pause(): void;
  resume(): void;
}

/** Time for status updates; injected so that tests tick by hand (no wall-clock bounds). */
export interface StatusClock {
  /** Unix milliseconds (the send time in status updates). */
  now(): number;
  /** Call `fn` every `ms` until the returned function is called. */
  every(ms: number, fn: () => void): () => void;
}

export const realStatusClock: StatusClock = {
  now: () => Date.now(),
  every: (ms, fn) => {
    const t = setInterval(fn, ms);
    t.unref(); // a status timer alone must not keep the process alive
    return () => clearInterval(t);
  },
};

export interface WalStreamOptions {
  /** Where the stream starts (the requested START_REPLICATION position). */
  readonly start: Lsn;
  /** Send a status update this often (pg_receivewal's --status-interval, 10 s); 0: only when asked. */
  readonly statusIntervalMs?: number;
  readonly clock?: StatusClock;
  /** Messages buffered before the socket is paused. Default 16 (at most 2 MiB of XLogData). */
  readonly highWaterMark?: number;
}

export interface EndOfTimeline extends TimelineEnd {
  readonly type: 'end-of-timeline';
}

export type WalStreamEvent = XLogData | PrimaryKeepalive | EndOfTimeline;

/** Positions a receiver reports; `apply` stays 0 (InvalidXLogRecPtr) for one that does not replay. */
export interface ReceiverPositions {
  readonly write: Lsn;
  readonly flush: Lsn;
  readonly apply?: Lsn;
}

export class WalStream extends Readable {
  readonly start: Lsn;
  #received: Lsn;
  #write = 0n;
  #flush = 0n;
  #apply = 0n;
  #sentCopyDone = false;
  #serverCopyDone = false;
  #paused = false;
  #stopTimer: (() => void) | undefined;
  readonly #transport: CopyBothTransport;
  readonly #clock: StatusClock;

  constructor(transport: CopyBothTransport, options: WalStreamOptions) {
    super({ objectMode: true, highWaterMark: options.highWaterMark ?? 16 });
    this.start = options.start;
    this.#received = options.start;
    this.#transport = transport;
    this.#clock = options.clock ?? realStatusClock;
    // A failure arrives whenever the server or the network says so, maybe while the consumer is busy
    // elsewhere: without a listener Node would turn the 'error' event into a process crash. The
    // consumer still gets the error from iteration, pipeline(), finished() or `errored`.
    this.on('error', () => undefined);
    const interval = options.statusIntervalMs ?? 0;
    if (interval > 0) this.#stopTimer = this.#clock.every(interval, () => this.#tick());
  }

  /** The end of the WAL received so far (the next XLogData must start here). */
  get received(): Lsn {
    return this.#received;
  }

  /** The positions that the next status update will carry. */
  get positions(): Required<ReceiverPositions> {
    return { write: this.#write, flush: this.#flush, apply: this.#apply };
  }

  /**
   * Record what the consumer has written and made durable (sent with the next status update).
   * Throws RangeError when positions go backwards, flush passes write, or write passes what was received.
   */
  report(p: ReceiverPositions): void {
    const apply = p.apply ?? this.#apply;
    if (p.write < this.#write || p.flush < this.#flush || apply < this.#apply) {
      throw new RangeError(`receiver positions went backwards: write ${formatLsn(p.write)} flush ${formatLsn(p.flush)} after write ${formatLsn(this.#write)} flush ${formatLsn(this.#flush)}`);
    }
    if (p.flush > p.write) throw new RangeError(`flush position ${formatLsn(p.flush)} is past the write position ${formatLsn(p.write)}`);
    if (p.write > this.#received) throw new RangeError(`write position ${formatLsn(p.write)} is past the WAL received (${formatLsn(this.#received)})`);
    this.#write = p.write;
    this.#flush = p.flush;
    this.#apply = apply;
  }

  /** Send a standby status update with the reported positions now. False once this side has sent CopyDone. */
  sendStatus(replyRequested = false): boolean {
    if (this.#sentCopyDone || this.destroyed) return false;
    const { write, flush, apply } = this.positions;
    this.#transport.sendCopyData(serializeStandbyStatus({ write, flush, apply, sendTime: pgTimeFromUnixMs(this.#clock.now()), replyRequested }));
    return true;
  }

  /**
   * End streaming from this side: a last status update (so the slot reaches the final flush
   * position), then CopyDone. The stream ends when the server has answered.
   */
  stop(): void {
    if (this.#sentCopyDone || this.destroyed) return;
    this.sendStatus();
    this.#sendCopyDone();
    this.#resume(); // the server's answer must be read even if nobody consumes
  }

  // -- fed by the connection ------------------------------------------------------------------------

  /** One CopyData payload from the server (may be a view into a reused buffer: copied here). */
  receive(payload: Buffer): void {
    if (this.destroyed) return;
    let m;
    try {
      m = parseServerStreamMessage(payload);
    } catch (e) {
      this.destroy(e as Error);
      return;
    }
    if (m.type === 'keepalive') {
      if (m.replyRequested) this.sendStatus();
      this.#push(m);
      return;
    }
    if (m.start !== this.#received) {
      this.destroy(new ProtocolError(`replication stream: WAL data at ${formatLsn(m.start)} does not continue the data received up to ${formatLsn(this.#received)}`));
      return;
    }
    const data = Buffer.allocUnsafe(m.data.length);
    m.data.copy(data);
    this.#received = m.start + BigInt(data.length);
    this.#push({ ...m, data });
  }

  /** The server sent CopyDone: it sends no more WAL on this timeline. Answer with ours (the protocol asks for it). */
  serverCopyDone(): void {
    this.#serverCopyDone = true;
    this.#clearTimer();
    if (!this.#sentCopyDone) this.#sendCopyDone();
  }

  /** START_REPLICATION completed: `timelineEnd` when the server ended a historic timeline. */
  finish(timelineEnd: TimelineEnd | undefined): void {
    this.#commandOver();
    if (this.destroyed) return;
    if (!this.#serverCopyDone) {
      this.destroy(new ProtocolError('replication stream: the server completed START_REPLICATION without ending the copy'));
      return;
    }
    if (timelineEnd) this.push({ type: 'end-of-timeline', ...timelineEnd } satisfies EndOfTimeline);
    this.push(null);
  }

  /** The server or the connection failed. */
  fail(err: Error): void {
    this.#commandOver();
    if (!this.destroyed) this.destroy(err);
  }

  // -- Readable ----------------------------------------------------------------------------------

  override _read(): void {
    this.#resume();
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.#clearTimer();
    // A consumer that gives up (or a ProtocolError) ends the copy, so that the server completes
    // START_REPLICATION and the connection can be used (or closed) cleanly.
    if (!this.#sentCopyDone) this.#sendCopyDone();
    this.#resume(); // let the connection read the server's error or end
    cb(err);
  }

  #push(ev: WalStreamEvent): void {
    if (!this.push(ev) && !this.#paused) {
      this.#paused = true;
      this.#transport.pause();
    }
  }

  #resume(): void {
    if (this.#paused) {
      this.#paused = false;
      this.#transport.resume();
    }
  }

  #tick(): void {
    this.sendStatus();
  }

  #sendCopyDone(): void {
    this.#sentCopyDone = true;
    this.#clearTimer();
    this.#transport.sendCopyDone();
  }

  /** The server has completed (or failed) START_REPLICATION: nothing more may be sent in this copy. */
  #commandOver(): void {
    this.#sentCopyDone = true;
    this.#clearTimer();
  }

  #clearTimer(): void {
    this.#stopTimer?.();
    this.#stopTimer = undefined;
  }
}
