/**
 * wal-receive: streams WAL through a named physical replication slot into the archive, as
 * pg_receivewal or `barman receive-wal` do, with walts' own protocol client (postgres/replication/).
 * See docs/streaming.md for the operator's view.
 *
 * One run of `session()` is one replication connection:
 *   IDENTIFY_SYSTEM → the archive's cluster must be this server's (else exit 3, before anything is
 *   written) → the slot (created with --create-slot when missing, RESERVE_WAL, then read back) →
 *   START_REPLICATION at the segment boundary of the slot's restart_lsn, on its timeline → the
 *   receiver's record `receive/<slot>/receiver.json` (overwritten) → WAL goes to
 *   the SegmentArchiver (receive/segmentArchiver.ts) → at the end of a timeline, the next timeline's
 *   history file is archived and streaming goes on from the segment boundary of its start, as
 *   pg_receivewal does.
 *
 * The server hears "written" for what was received and staged, and "flushed" only for what the store
 * acknowledged (SegmentArchiver.durable), so the slot never passes what the store holds. Those
 * positions go out every --status-interval, whenever the server asks, and as soon as a flush moves them.
 *
 * Failures: a lost connection, a server that is not up, a store that fails (after the store's own
 * retries) end the session; the next one starts again from the slot, after a backoff of the one retry
 * policy (the command's RetryBudget, 'outage' window: a receiver that streams for hours gets a full
 * deadline for each outage). When the budget is spent the last error ends the command (exit 4). Not
 * retried, since a supervisor should not restart blindly either: a missing or foreign slot, a slot in
 * use when the command starts (another receiver), a foreign cluster, settings (exit 2 or 3).
 * A slot found in use on a reconnect is retried: the server may not have noticed yet that our own
 * previous connection is gone.
 *
 * Stopping (SIGTERM/SIGINT, the signal aborts): the segment in progress is written as its .partial,
 * the positions are reported, the copy is ended (CopyDone) and the connection closed; main.ts then
 * re-raises the signal.
 */
import { openArchive, checkWriteEncryption } from '../archive/archive';
import { writeReceiverRecord } from '../archive/receiverRecord';
import type { Deps } from '../deps';
import { IntegrityError, isTransient, ProtocolError, ReplicationSlotError, UnavailableError, describeError } from '../errors';
import type { SlotState, SystemIdentity, TimelineEnd, TimelineHistoryFile } from '../postgres/replication/commands';
import { checkSlotName, showBytes } from '../postgres/replication/commands';
import type { StartPhysicalOptions } from '../postgres/replication/connection';
import type { StatusClock, WalStream, WalStreamEvent } from '../postgres/replication/walStream';
import { formatLsn, isValidSegmentSize, type Lsn } from '../postgres/walName';
import { SegmentArchiver } from './receive/segmentArchiver';

/** What wal-receive needs of a replication connection (ReplicationConnection; faked in unit tests). */
export interface ReplicationClient {
  identifySystem(): Promise<SystemIdentity>;
  /** A setting as SHOW prints it (ReplicationConnection.show). */
  show(name: string): Promise<string | undefined>;
  readReplicationSlot(slot: string): Promise<SlotState | undefined>;
  createPhysicalSlot(slot: string, opts: { reserveWal: boolean }): Promise<void>;
  timelineHistory(timeline: number): Promise<TimelineHistoryFile>;
  startPhysical(opts: StartPhysicalOptions): Promise<WalStream>;
  close(): Promise<void>;
}

/** Timers of the flush interval; injected so that unit tests tick by hand. */
export interface FlushClock {
  every(ms: number, fn: () => void): () => void;
}

const realFlushClock: FlushClock = {
  every: (ms, fn) => {
    const t = setInterval(fn, ms);
    return () => clearInterval(t);
  },
};

export interface WalReceiveOptions {
  readonly slot: string;
  readonly createSlot: boolean;
  /** Write the segment in progress as its .partial this often while new WAL arrives. */
  readonly flushIntervalMs: number;
  /** Status updates to the server this often (also when asked, and after each flush). */
  readonly statusIntervalMs: number;
  /**
   * Flush as soon as the WAL received so far has been staged (no more is waiting in the stream),
   * not only every flushIntervalMs: what a synchronous standby candidate must do, since commits on
   * the primary wait for its flush report (docs/streaming.md, "Synchronous").
   */
  readonly synchronous?: boolean;
  /** This process's staging directory (receive/staging.ts). */
  readonly stagingDir: string;
  readonly connect: () => Promise<ReplicationClient>;
  /** Aborted: stop cleanly (see the module comment). */
  readonly signal: AbortSignal;
  readonly flushClock?: FlushClock;
  readonly statusClock?: StatusClock;
  /** How long a clean stop waits for the server to end the copy. Default 10 s. */
  readonly stopTimeoutMs?: number;
}

export interface WalReceiveResult {
  readonly slot: string;
  readonly timeline: number | undefined;
  /** The last position reported to the server as flushed (what the store holds), if any. */
  readonly flushed: string | undefined;
  readonly reconnects: number;
}

/** Runs until `signal` aborts (resolves) or a failure that is not retried, or the retry budget is spent (rejects). */
export async function walReceive(deps: Deps, opts: WalReceiveOptions): Promise<WalReceiveResult> {
  checkSlotName(opts.slot);
  const state: SessionState = { first: true, timeline: undefined, flushed: 0n, progressed: false };
  let reconnects = 0;
  let attempt = 0;
  let firstFailure: number | undefined;
  for (;;) {
    try {
      await session(deps, opts, state);
      break; // stopped by the signal
    } catch (err) {
      if (opts.signal.aborted) break;
      const retryable = isTransient(err) || (!state.first && err instanceof ReplicationSlotError && err.reason === 'in-use');
      if (!retryable) throw err;
      if (state.progressed) {
        // It streamed and the store took WAL: this is a new outage, with a full deadline of its own.
        deps.retry.succeeded();
        attempt = 0;
        firstFailure = undefined;
        state.progressed = false;
      }
      attempt++;
      firstFailure ??= deps.retry.clock.now();
      const delay = deps.retry.nextDelay(attempt, firstFailure);
      if (delay === undefined) {
        deps.log.error({ attempts: attempt, error: describeError(err) }, 'wal-receive: giving up: the retry deadline (WALTS_RETRY_DEADLINE) has passed');
        throw err;
      }
      reconnects++;
      deps.log.warn({ attempt, delay_ms: delay, error: describeError(err) }, 'wal-receive: streaming interrupted; reconnecting');
      await deps.retry.sleep(delay, opts.signal).catch(() => undefined);
      if (opts.signal.aborted) break;
    }
  }
  return { slot: opts.slot, timeline: state.timeline, flushed: state.flushed > 0n ? formatLsn(state.flushed) : undefined, reconnects };
}

interface SessionState {
  /** No session has started streaming yet in this process. */
  first: boolean;
  timeline: number | undefined;
  flushed: Lsn;
  /** The store took WAL since the last failure. */
  progressed: boolean;
}

async function session(deps: Deps, opts: WalReceiveOptions, state: SessionState): Promise<void> {
  const client = await opts.connect();
  let archiver: SegmentArchiver | undefined;
  try {
    const id = await client.identifySystem();
    const segText = await client.show('wal_segment_size');
    const segmentSize = segText === undefined ? NaN : showBytes(segText);
    if (!isValidSegmentSize(segmentSize)) throw new ProtocolError(`the server reports an unusable wal_segment_size ${JSON.stringify(segText)}`);
    // Before anything is written: the archive must exist, accept our codecs, and belong to this cluster.
    const archive = await openArchive(deps.storage);
    checkWriteEncryption(archive, deps.codecs.writeChain.some((c) => c.name === 'pgp'), deps.storage);
    if (archive.cluster && archive.cluster.system_identifier !== id.systemId) {
      throw new IntegrityError(
        `the server is database system ${id.systemId}, but this store belongs to system ${archive.cluster.system_identifier}; refusing to stream into it (use a separate WALTS_STORE prefix per cluster)`,
      );
    }
    if (archive.cluster && archive.cluster.wal_segment_size !== segmentSize) {
      throw new IntegrityError(`the server has ${segmentSize}-byte WAL segments, but this store holds ${archive.cluster.wal_segment_size}-byte segments`);
    }

    const slot = await findSlot(deps, client, opts, state.first);
    let timeline = slot.restartTimeline ?? id.timeline;
    let restart = slot.restartLsn;
    if (restart === undefined) {
      deps.log.warn({ slot: opts.slot, lsn: formatLsn(id.xlogPos) }, 'wal-receive: the slot reserves no WAL yet: starting at the server\'s current position');
      restart = id.xlogPos;
    }
    const seg = BigInt(segmentSize);
    let start = (restart / seg) * seg;

    archiver = await SegmentArchiver.open(deps, { slot: opts.slot, segmentSize, systemId: id.systemId, dir: opts.stagingDir });
    const removed = await archiver.removeSuperseded(start, timeline);
    if (removed.length > 0) deps.log.info({ keys: removed }, 'wal-receive: removed .partial objects whose segment is archived');

    for (;;) {
      state.timeline = timeline;
      // The history file first, as PostgreSQL writes it before WAL of the new timeline.
      if (timeline > 1) {
        const history = await client.timelineHistory(timeline);
        await archiver.pushHistory(history.fileName, history.content);
      }
      await archiver.begin(timeline, start);
      if (opts.signal.aborted) return;
      const stream = await client.startPhysical({
        slot: opts.slot,
        start,
        timeline,
        statusIntervalMs: opts.statusIntervalMs,
        ...(opts.statusClock ? { clock: opts.statusClock } : {}),
      });
      // The record stays in receive/<slot>/ between segments: backup-push sees this receiver even
      // while the folder holds no partial (archive/receiverRecord.ts).
      await writeReceiverRecord(deps.storage, { slot: opts.slot, system_identifier: id.systemId, timeline, host: deps.host, pid: process.pid, started_at: deps.now().toISOString(), walts_version: deps.version }, opts.signal);
      deps.log.info({ slot: opts.slot, timeline, start: formatLsn(start), system_identifier: id.systemId }, 'wal-receive: streaming');
      state.first = false;
      const end = await consume(deps, opts, stream, archiver, state);
      if (end === 'stopped') return;
      await archiver.endTimeline();
      deps.log.info({ timeline, next_timeline: end.nextTimeline, next_start: formatLsn(end.nextTimelineStart) }, 'wal-receive: timeline ended; following the next one');
      timeline = end.nextTimeline;
      start = (end.nextTimelineStart / seg) * seg;
    }
  } finally {
    await archiver?.discard().catch(() => undefined);
    await client.close();
  }
}

async function findSlot(deps: Deps, client: ReplicationClient, opts: WalReceiveOptions, first: boolean): Promise<SlotState> {
  const slot = await client.readReplicationSlot(opts.slot);
  if (slot) return slot;
  // Only at start: a slot that vanishes while we stream was dropped by someone, and creating it again
  // would silently leave a gap in the archive.
  if (!(opts.createSlot && first)) {
    throw new ReplicationSlotError(
      `replication slot "${opts.slot}" does not exist on this server${first ? ' (create it with --create-slot, or SELECT pg_create_physical_replication_slot(\'' + opts.slot + '\', true))' : ' any more (dropped while streaming?): refusing to create it again, which would leave a gap in the archive'}`,
      opts.slot,
      'missing',
    );
  }
  await client.createPhysicalSlot(opts.slot, { reserveWal: true });
  // CREATE_REPLICATION_SLOT's consistent_point is 0/0 for physical slots: read where it reserves from.
  const created = await client.readReplicationSlot(opts.slot);
  if (!created) throw new ReplicationSlotError(`replication slot "${opts.slot}" vanished right after it was created`, opts.slot, 'missing');
  deps.log.warn({ slot: opts.slot, restart_lsn: created.restartLsn === undefined ? undefined : formatLsn(created.restartLsn) }, 'wal-receive: created the replication slot: WAL before its restart_lsn is not streamed');
  return created;
}

/**
 * Takes the stream's events until it ends with the end of a timeline, or the signal stops it. The
 * flush timer and the signal wake the loop between events; all store work runs in this loop, one
 * thing at a time, so a slow store holds the stream back (the socket is paused: the server keeps the
 * WAL, the slot does not move) instead of filling memory or the disk.
 */
async function consume(deps: Deps, opts: WalReceiveOptions, stream: WalStream, archiver: SegmentArchiver, state: SessionState): Promise<TimelineEnd | 'stopped'> {
  const it = stream.iterator({ destroyOnReturn: false })[Symbol.asyncIterator]() as AsyncIterator<WalStreamEvent>;
  let pending: Promise<IteratorResult<WalStreamEvent>> | undefined;
  let wake: (() => void) | undefined;
  let flushDue = false;
  const stopTimer = (opts.flushClock ?? realFlushClock).every(opts.flushIntervalMs, () => {
    flushDue = true;
    wake?.();
  });
  const onAbort = () => wake?.();
  opts.signal.addEventListener('abort', onAbort);
  const report = () => {
    stream.report({ write: archiver.written, flush: archiver.durable });
    if (archiver.durable > state.flushed) {
      state.flushed = archiver.durable;
      state.progressed = true;
    }
  };
  try {
    for (;;) {
      if (opts.signal.aborted) {
        await archiver.flushPartial();
        report();
        deps.log.info({ flushed: formatLsn(archiver.durable), written: formatLsn(archiver.written) }, 'wal-receive: stopping');
        stream.stop(); // a last status update with these positions, then CopyDone
        await drain(stream, it, pending, opts.stopTimeoutMs ?? 10_000);
        return 'stopped';
      }
      if (flushDue) {
        flushDue = false;
        if (await archiver.flushPartial()) {
          report();
          stream.sendStatus(); // let the slot follow now, not at the next status interval
        }
        continue;
      }
      if (!pending) {
        pending = it.next();
        pending.catch(() => undefined); // awaited below; it may fail while store work runs
      }
      const woken = new Promise<undefined>((resolve) => (wake = () => resolve(undefined)));
      const r = await Promise.race([pending, woken]).catch(async (err: unknown) => {
        await salvage(deps, archiver);
        throw err;
      });
      wake = undefined;
      if (r === undefined) continue;
      pending = undefined;
      if (r.done) {
        await salvage(deps, archiver);
        throw new UnavailableError('the server ended streaming without ending the timeline (shutting down?)', { transient: true });
      }
      const ev = r.value;
      if (ev.type === 'xlog-data') {
        const before = archiver.durable;
        await archiver.write(ev.start, ev.data);
        report();
        if (archiver.durable > before) stream.sendStatus(); // a segment was archived
        if (opts.synchronous && stream.readableLength === 0) flushDue = true;
      } else if (ev.type === 'end-of-timeline') {
        return ev;
      }
      // keepalives: WalStream answers those that ask for a reply.
    }
  } finally {
    stopTimer();
    opts.signal.removeEventListener('abort', onAbort);
  }
}

/**
 * The stream failed or ended (the server or the network went away): what was received is valid,
 * contiguous WAL, and maybe the last copy of it if the server is gone for good (a primary that
 * crashed), so it is written to the store before the connection is given up. Its own failure is
 * only logged: the stream's is the one that counts.
 */
async function salvage(deps: Deps, archiver: SegmentArchiver): Promise<void> {
  try {
    if (await archiver.flushPartial()) deps.log.info({ lsn: formatLsn(archiver.durable) }, 'wal-receive: streaming ended: the WAL received is in the store');
  } catch (err) {
    deps.log.warn({ error: describeError(err) }, 'wal-receive: streaming ended, and the WAL received since the last flush could not be written to the store');
  }
}

/** After stop(): reads what the server still sends until it ends the copy (bounded: a hung server must not hold the shutdown). */
async function drain(stream: WalStream, it: AsyncIterator<WalStreamEvent>, pending: Promise<IteratorResult<WalStreamEvent>> | undefined, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
  const reading = (async () => {
    for (let r = await (pending ?? it.next()); !r.done; r = await it.next()) {
      // WAL after the last report is not ours to keep: the slot still holds it.
    }
  })().catch(() => undefined);
  await Promise.race([reading, timeout]);
  clearTimeout(timer);
  if (!stream.readableEnded) stream.destroy();
}
