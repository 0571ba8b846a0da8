/**
 * The messages inside CopyData of a physical replication stream (PostgreSQL 15 protocol, "Streaming
 * Replication Protocol", START_REPLICATION): XLogData ('w') and primary keepalive ('k') from the
 * server, standby status update ('r') from the client. Pure: no I/O.
 *
 * Every integer is big-endian (network order). Times are microseconds since 2000-01-01 00:00 UTC
 * (PostgreSQL's epoch, POSTGRES_EPOCH_JDATE in datatype/timestamp.h).
 */
import { ProtocolError } from '../../errors';
import type { Lsn } from '../walName';

/** Message type bytes (walsender.c / walreceiver.c). */
export const ReplicationMessageType = {
  XLogData: 0x77, // 'w'
  PrimaryKeepalive: 0x6b, // 'k'
  StandbyStatusUpdate: 0x72, // 'r'
} as const;

/** Byte1('w') + Int64 dataStart + Int64 walEnd + Int64 sendTime: the header before the WAL bytes. */
export const XLOG_DATA_HEADER_SIZE = 25;
/** Byte1('k') + Int64 walEnd + Int64 sendTime + Byte1 replyRequested. */
export const KEEPALIVE_SIZE = 18;
/** Byte1('r') + Int64 write + Int64 flush + Int64 apply + Int64 sendTime + Byte1 replyRequested. */
export const STATUS_UPDATE_SIZE = 34;

/** Milliseconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00 UTC). */
const PG_EPOCH_UNIX_MS = 946_684_800_000;

/** WAL bytes from the server: `data` belongs at `start` .. start + data.length. */
export interface XLogData {
  readonly type: 'xlog-data';
  readonly start: Lsn;
  /** The server's current end of WAL (its flush position, or the timeline's end when it is historic). */
  readonly serverWalEnd: Lsn;
  /** Server clock when sent, microseconds since 2000-01-01 UTC. */
  readonly sendTime: bigint;
  readonly data: Buffer;
}

/** A keepalive; with `replyRequested` the server wants a status update now (or it disconnects at wal_sender_timeout). */
export interface PrimaryKeepalive {
  readonly type: 'keepalive';
  readonly serverWalEnd: Lsn;
  readonly sendTime: bigint;
  readonly replyRequested: boolean;
}

export type ServerStreamMessage = XLogData | PrimaryKeepalive;

/** What the client tells the server. The slot of a physical receiver advances to `flush` (never past it). */
export interface StandbyStatus {
  /** Received and written (not necessarily durable). */
  readonly write: Lsn;
  /** Durable: the server may recycle WAL before this point. 0 (InvalidXLogRecPtr) says "nothing yet". */
  readonly flush: Lsn;
  /** Replayed; 0 for a receiver that does not replay. */
  readonly apply: Lsn;
  /** Client clock, microseconds since 2000-01-01 UTC. */
  readonly sendTime: bigint;
  /** Ask the server to answer with a keepalive at once. */
  readonly replyRequested: boolean;
}

const MAX_LSN = 0xffff_ffff_ffff_ffffn;

/**
 * Reads one CopyData payload of a physical replication stream. `payload` may be a view into a buffer
 * that is reused later: XLogData.data is a view too, and a caller that keeps it must copy it.
 * Throws ProtocolError for anything that is not a well-formed 'w' or 'k' message.
 */
export function parseServerStreamMessage(payload: Buffer): ServerStreamMessage {
  if (payload.length === 0) throw new ProtocolError('replication stream: empty CopyData message');
  const type = payload[0]!;
  switch (type) {
    case ReplicationMessageType.XLogData: {
      if (payload.length < XLOG_DATA_HEADER_SIZE) {
        throw new ProtocolError(`replication stream: XLogData message of ${payload.length} bytes is shorter than its ${XLOG_DATA_HEADER_SIZE}-byte header`);
      }
      const start = payload.readBigUInt64BE(1);
      const data = payload.subarray(XLOG_DATA_HEADER_SIZE);
      if (start + BigInt(data.length) > MAX_LSN) throw new ProtocolError(`replication stream: XLogData at ${start} with ${data.length} bytes runs past the largest LSN`);
      return { type: 'xlog-data', start, serverWalEnd: payload.readBigUInt64BE(9), sendTime: payload.readBigInt64BE(17), data };
    }
    case ReplicationMessageType.PrimaryKeepalive: {
      if (payload.length !== KEEPALIVE_SIZE) {
        throw new ProtocolError(`replication stream: keepalive message of ${payload.length} bytes (expected ${KEEPALIVE_SIZE})`);
      }
      const reply = payload[17]!;
      if (reply > 1) throw new ProtocolError(`replication stream: keepalive with reply flag ${reply} (expected 0 or 1)`);
      return { type: 'keepalive', serverWalEnd: payload.readBigUInt64BE(1), sendTime: payload.readBigInt64BE(9), replyRequested: reply === 1 };
    }
    default:
      throw new ProtocolError(`replication stream: unknown message type 0x${type.toString(16).padStart(2, '0')}`);
  }
}

/** The CopyData payload of a standby status update ('r'). Throws RangeError for positions out of range. */
export function serializeStandbyStatus(s: StandbyStatus): Buffer {
  const b = Buffer.alloc(STATUS_UPDATE_SIZE);
  b[0] = ReplicationMessageType.StandbyStatusUpdate;
  b.writeBigUInt64BE(s.write, 1);
  b.writeBigUInt64BE(s.flush, 9);
  b.writeBigUInt64BE(s.apply, 17);
  b.writeBigInt64BE(s.sendTime, 25);
  b[33] = s.replyRequested ? 1 : 0;
  return b;
}

/** Unix milliseconds → PostgreSQL timestamp (microseconds since 2000-01-01 UTC). */
export function pgTimeFromUnixMs(ms: number): bigint {
  return (BigInt(Math.trunc(ms)) - BigInt(PG_EPOCH_UNIX_MS)) * 1000n;
}

/** PostgreSQL timestamp → Unix milliseconds (rounded down). */
export function unixMsFromPgTime(t: bigint): number {
  const us = t + BigInt(PG_EPOCH_UNIX_MS) * 1000n;
  return Number(us >= 0n ? us / 1000n : (us - 999n) / 1000n);
}
