import { ProtocolError } from '../../../../src/errors';
import { KEEPALIVE_SIZE, XLOG_DATA_HEADER_SIZE } from '../../../../src/postgres/replication/messages';
import { type CopyBothTransport, type StatusClock, WalStream, type WalStreamEvent } from '../../../../src/postgres/replication/walStream';

/** What the stream sent, in order: 'r' status updates decoded, 'done' for CopyDone, 'pause'/'resume'. */
type Sent = { status: { write: bigint; flush: bigint; apply: bigint; time: bigint; reply: boolean } } | 'done' | 'pause' | 'resume';

function fakeTransport(): CopyBothTransport & { sent: Sent[]; statuses(): { write: bigint; flush: bigint; apply: bigint }[] } {
  const sent: Sent[] = [];
  return {
    sent,
    sendCopyData: (b) => {
      expect(b[0]).toBe(0x72);
      expect(b.length).toBe(34);
      sent.push({ status: { write: b.readBigUInt64BE(1), flush: b.readBigUInt64BE(9), apply: b.readBigUInt64BE(17), time: b.readBigInt64BE(25), reply: b[33] === 1 } });
    },
    sendCopyDone: () => sent.push('done'),
    pause: () => sent.push('pause'),
    resume: () => sent.push('resume'),
    statuses: () => sent.flatMap((s) => (typeof s === 'object' ? [{ write: s.status.write, flush: s.status.flush, apply: s.status.apply }] : [])),
  };
}

function manualClock(nowMs = Date.UTC(2000, 0, 1, 0, 0, 2)): StatusClock & { tick(): void; timers: number } {
  const fns = new Set<() => void>();
  return {
    now: () => nowMs,
    every: (_ms, fn) => {
      fns.add(fn);
      return () => fns.delete(fn);
    },
    tick: () => fns.forEach((f) => f()),
    get timers() {
      return fns.size;
    },
  };
}

function xlogData(start: bigint, data: Buffer): Buffer {
  const b = Buffer.alloc(XLOG_DATA_HEADER_SIZE);
  b[0] = 0x77;
  b.writeBigUInt64BE(start, 1);
  b.writeBigUInt64BE(start + BigInt(data.length), 9);
  return Buffer.concat([b, data]);
}

function keepalive(reply: boolean): Buffer {
  const b = Buffer.alloc(KEEPALIVE_SIZE);
  b[0] = 0x6b;
  b.writeBigUInt64BE(0x3000000n, 1);
  b[17] = reply ? 1 : 0;
  return b;
}

async function drain(s: WalStream): Promise<WalStreamEvent[]> {
  const out: WalStreamEvent[] = [];
  for await (const ev of s) out.push(ev as WalStreamEvent);
  return out;
}

async function failure(s: WalStream): Promise<Error> {
  try {
    await drain(s);
  } catch (e) {
    return e as Error;
  }
  throw new Error('the stream ended without an error');
}

const START = 0x3000000n;

describe('WalStream', () => {
  it('copies WAL out of the buffer it arrived in (pg reuses its parse buffer)', async () => {
    const s = new WalStream(fakeTransport(), { start: START });
    const wire = xlogData(START, Buffer.from('abcd'));
    s.receive(wire);
    wire.fill(0); // what a reused parser buffer would do
    s.receive(xlogData(START + 4n, Buffer.from('ef')));
    expect(s.received).toBe(START + 6n);
    s.serverCopyDone();
    s.finish(undefined);
    const events = await drain(s);
    expect(events.map((e) => e.type === 'xlog-data' && e.data.toString())).toEqual(['abcd', 'ef']);
  });

  test.each([
    ['a gap', START + 1n, /WAL data at 0\/3000001 does not continue the data received up to 0\/3000000/],
    ['an overlap', START - 1n, /WAL data at 0\/2FFFFFF does not continue/],
  ])('refuses %s in the WAL', async (_what, at, message) => {
    const t = fakeTransport();
    const s = new WalStream(t, { start: START });
    s.receive(xlogData(at, Buffer.from('x')));
    const e = await failure(s);
    expect(e).toBeInstanceOf(ProtocolError);
    expect(e.message).toMatch(message);
    expect(t.sent).toContain('done'); // the copy is ended so the connection can finish cleanly
  });

  it('fails on a malformed message', async () => {
    const s = new WalStream(fakeTransport(), { start: START });
    s.receive(Buffer.from('k123'));
    expect((await failure(s)).message).toMatch(/keepalive message of 4 bytes/);
  });

  it('answers a keepalive that asks for a reply at once, with the reported positions', () => {
    const t = fakeTransport();
    const s = new WalStream(t, { start: START, clock: manualClock() });
    s.receive(keepalive(false));
    expect(t.statuses()).toEqual([]);
    s.receive(xlogData(START, Buffer.alloc(100)));
    s.report({ write: START + 100n, flush: START + 50n });
    s.receive(keepalive(true));
    expect(t.sent).toEqual([{ status: { write: START + 100n, flush: START + 50n, apply: 0n, time: 2_000_000n, reply: false } }]);
  });

  it('sends a status update on each tick of the caller\'s timer, and none without one', () => {
    const t = fakeTransport();
    const clock = manualClock();
    const s = new WalStream(t, { start: START, statusIntervalMs: 10_000, clock });
    expect(t.statuses()).toEqual([]);
    clock.tick();
    s.receive(xlogData(START, Buffer.alloc(8)));
    s.report({ write: START + 8n, flush: START + 8n });
    clock.tick();
    expect(t.statuses()).toEqual([
      { write: 0n, flush: 0n, apply: 0n }, // nothing flushed: InvalidXLogRecPtr, the slot does not move
      { write: START + 8n, flush: START + 8n, apply: 0n },
    ]);
    const quiet = manualClock();
    new WalStream(fakeTransport(), { start: START, clock: quiet });
    expect(quiet.timers).toBe(0);
  });

  it('refuses positions that go backwards, flush past write, or write past what was received', () => {
    const s = new WalStream(fakeTransport(), { start: START });
    s.receive(xlogData(START, Buffer.alloc(10)));
    expect(() => s.report({ write: START + 11n, flush: 0n })).toThrow(/past the WAL received/);
    expect(() => s.report({ write: START + 5n, flush: START + 6n })).toThrow(/flush position 0\/3000006 is past the write position/);
    s.report({ write: START + 10n, flush: START + 5n });
    expect(() => s.report({ write: START + 9n, flush: START + 5n })).toThrow(/went backwards/);
    expect(() => s.report({ write: START + 10n, flush: START + 4n })).toThrow(/went backwards/);
    expect(s.positions).toEqual({ write: START + 10n, flush: START + 5n, apply: 0n });
  });

  it('pauses the socket when the consumer falls behind, and resumes when it reads', async () => {
    const t = fakeTransport();
    const s = new WalStream(t, { start: START, highWaterMark: 2 });
    for (let i = 0n; i < 5n; i++) s.receive(xlogData(START + i * 4n, Buffer.alloc(4)));
    // The socket was paused once, when the buffer reached 2 messages; what was already read is kept.
    expect(t.sent).toEqual(['pause']);
    expect(s.readableLength).toBe(5);
    const it = s[Symbol.asyncIterator]();
    for (let i = 0; i < 5; i++) await it.next();
    expect(t.sent).toEqual(['pause', 'resume']);
    s.receive(xlogData(START + 20n, Buffer.alloc(4)));
    expect(t.sent).toEqual(['pause', 'resume']);
  });

  it('a stop from this side: a last status update, CopyDone once, then the end', async () => {
    const t = fakeTransport();
    const clock = manualClock();
    const s = new WalStream(t, { start: START, statusIntervalMs: 1000, clock });
    s.receive(xlogData(START, Buffer.alloc(16)));
    s.report({ write: START + 16n, flush: START + 16n });
    s.stop();
    expect(t.sent).toEqual([{ status: expect.objectContaining({ flush: START + 16n }) }, 'done']);
    expect(clock.timers).toBe(0);
    expect(s.sendStatus()).toBe(false); // nothing may follow our CopyDone
    s.serverCopyDone(); // the server's answer: not answered again
    s.finish(undefined);
    expect(t.sent.filter((x) => x === 'done')).toHaveLength(1);
    const events = await drain(s);
    expect(events.map((e) => e.type)).toEqual(['xlog-data']);
  });

  it('the end of a historic timeline: CopyDone answered, then the next timeline as the last event', async () => {
    const t = fakeTransport();
    const s = new WalStream(t, { start: START });
    s.receive(xlogData(START, Buffer.alloc(4)));
    s.serverCopyDone();
    expect(t.sent).toEqual(['done']);
    s.finish({ nextTimeline: 2, nextTimelineStart: START + 4n });
    const events = await drain(s);
    expect(events[events.length - 1]).toEqual({ type: 'end-of-timeline', nextTimeline: 2, nextTimelineStart: START + 4n });
  });

  it('a command completed without the copy ending is a protocol error', async () => {
    const s = new WalStream(fakeTransport(), { start: START });
    s.finish(undefined);
    expect(await failure(s)).toBeInstanceOf(ProtocolError);
  });

  it('a server or connection failure ends the stream with that error, and stops the timer', async () => {
    const clock = manualClock();
    const s = new WalStream(fakeTransport(), { start: START, statusIntervalMs: 1000, clock });
    const t = fakeTransport();
    const s2 = new WalStream(t, { start: START, statusIntervalMs: 1000, clock: manualClock() });
    s.fail(new Error('terminating connection due to administrator command'));
    expect((await failure(s)).message).toMatch(/administrator command/);
    expect(clock.timers).toBe(0);
    // The command is over: nothing is sent on the connection any more (no CopyDone, no status).
    s2.fail(new Error('requested WAL segment has already been removed'));
    await failure(s2);
    expect(s2.sendStatus()).toBe(false);
    expect(t.sent).toEqual([]);
  });
});

describe('WalStream failures with nobody reading', () => {
  it('do not crash the process; the consumer gets the error when it reads', async () => {
    const s = new WalStream(fakeTransport(), { start: START });
    s.fail(new Error('connection lost'));
    await new Promise((r) => setImmediate(r)); // the 'error' event has been emitted by now
    expect(s.errored?.message).toBe('connection lost');
    expect((await failure(s)).message).toBe('connection lost');
  });
});
