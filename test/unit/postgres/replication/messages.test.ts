import { ProtocolError } from '../../../../src/errors';
import {
  KEEPALIVE_SIZE,
  STATUS_UPDATE_SIZE,
  XLOG_DATA_HEADER_SIZE,
  parseServerStreamMessage,
  pgTimeFromUnixMs,
  serializeStandbyStatus,
  unixMsFromPgTime,
} from '../../../../src/postgres/replication/messages';

/** XLogData as the walsender lays it out (walsender.c XLogSendPhysical). */
function xlogData(start: bigint, walEnd: bigint, sendTime: bigint, data: Buffer): Buffer {
  const b = Buffer.alloc(XLOG_DATA_HEADER_SIZE);
  b.write('w', 0, 'latin1');
  b.writeBigUInt64BE(start, 1);
  b.writeBigUInt64BE(walEnd, 9);
  b.writeBigInt64BE(sendTime, 17);
  return Buffer.concat([b, data]);
}

function keepalive(walEnd: bigint, sendTime: bigint, reply: number): Buffer {
  const b = Buffer.alloc(KEEPALIVE_SIZE);
  b.write('k', 0, 'latin1');
  b.writeBigUInt64BE(walEnd, 1);
  b.writeBigInt64BE(sendTime, 9);
  b[17] = reply;
  return b;
}

describe('replication stream messages', () => {
  it('reads XLogData: positions, send time and the WAL bytes', () => {
    const m = parseServerStreamMessage(xlogData(0x1_0300_0000n, 0x1_0400_0000n, 123456789n, Buffer.from('walbytes')));
    expect(m).toEqual({ type: 'xlog-data', start: 0x1_0300_0000n, serverWalEnd: 0x1_0400_0000n, sendTime: 123456789n, data: Buffer.from('walbytes') });
  });

  it('reads XLogData without WAL bytes, and positions above 2^53 exactly', () => {
    const m = parseServerStreamMessage(xlogData(0xffff_ffff_0000_0000n, 0xffff_ffff_ffff_fff0n, -1n, Buffer.alloc(0)));
    expect(m).toMatchObject({ start: 0xffff_ffff_0000_0000n, serverWalEnd: 0xffff_ffff_ffff_fff0n, sendTime: -1n });
    expect(m.type === 'xlog-data' && m.data.length).toBe(0);
  });

  it('reads keepalives with and without a reply request', () => {
    expect(parseServerStreamMessage(keepalive(0x3000060n, 42n, 1))).toEqual({ type: 'keepalive', serverWalEnd: 0x3000060n, sendTime: 42n, replyRequested: true });
    expect(parseServerStreamMessage(keepalive(0x3000060n, 42n, 0))).toMatchObject({ replyRequested: false });
  });

  test.each([
    ['an empty message', Buffer.alloc(0), /empty CopyData/],
    ['XLogData shorter than its header', xlogData(1n, 2n, 3n, Buffer.alloc(0)).subarray(0, 24), /XLogData message of 24 bytes is shorter than its 25-byte header/],
    ['XLogData of the type byte only', Buffer.from('w'), /XLogData message of 1 bytes/],
    ['a keepalive one byte short', keepalive(1n, 2n, 0).subarray(0, 17), /keepalive message of 17 bytes \(expected 18\)/],
    ['a keepalive one byte long', Buffer.concat([keepalive(1n, 2n, 0), Buffer.alloc(1)]), /keepalive message of 19 bytes \(expected 18\)/],
    ['a keepalive with reply flag 2', keepalive(1n, 2n, 2), /reply flag 2/],
    ['XLogData running past the largest LSN', xlogData(0xffff_ffff_ffff_fffen, 0n, 0n, Buffer.alloc(4)), /runs past the largest LSN/],
    ['an unknown message type', Buffer.from('h0123456789'), /unknown message type 0x68/],
    ['a standby status update (client to server only)', serializeStandbyStatus({ write: 1n, flush: 1n, apply: 0n, sendTime: 0n, replyRequested: false }), /unknown message type 0x72/],
  ])('refuses %s with a one-line ProtocolError', (_what, buf, message) => {
    let err: unknown;
    try {
      parseServerStreamMessage(buf);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).not.toContain('\n');
  });

  it('writes a standby status update byte for byte', () => {
    const b = serializeStandbyStatus({ write: 0x1_0000_0010n, flush: 0x1_0000_0008n, apply: 0n, sendTime: 0x0102030405060708n, replyRequested: true });
    expect(b.length).toBe(STATUS_UPDATE_SIZE);
    expect(b.toString('hex')).toBe(
      '72' + '0000000100000010' + '0000000100000008' + '0000000000000000' + '0102030405060708' + '01',
    );
    expect(serializeStandbyStatus({ write: 0n, flush: 0n, apply: 0n, sendTime: 0n, replyRequested: false })[33]).toBe(0);
  });

  it('refuses positions that do not fit in 64 bits', () => {
    expect(() => serializeStandbyStatus({ write: 1n << 64n, flush: 0n, apply: 0n, sendTime: 0n, replyRequested: false })).toThrow(/out of range/);
    expect(() => serializeStandbyStatus({ write: 0n, flush: -1n, apply: 0n, sendTime: 0n, replyRequested: false })).toThrow(/out of range/);
  });

  it('converts times between the Unix epoch and PostgreSQL 2000-01-01 microseconds', () => {
    expect(pgTimeFromUnixMs(Date.UTC(2000, 0, 1))).toBe(0n);
    expect(pgTimeFromUnixMs(Date.UTC(2000, 0, 1, 0, 0, 1, 500))).toBe(1_500_000n);
    expect(pgTimeFromUnixMs(Date.UTC(1999, 11, 31, 23, 59, 59))).toBe(-1_000_000n);
    expect(unixMsFromPgTime(1_500_999n)).toBe(Date.UTC(2000, 0, 1, 0, 0, 1, 500));
    expect(unixMsFromPgTime(-1n)).toBe(Date.UTC(2000, 0, 1) - 1);
    const now = Date.UTC(2026, 11, 2, 18, 0, 0, 123);
    expect(unixMsFromPgTime(pgTimeFromUnixMs(now))).toBe(now);
  });
});
