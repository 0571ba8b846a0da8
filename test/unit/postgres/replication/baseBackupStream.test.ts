/**
 * BaseBackupStream: the copy's messages as a stream that pauses the socket while its reader is slow
 * (the memory bound of backup-push --remote), and serverArchives: one tar per archive, with the end
 * blocks the server leaves out, progress on the side, and the end position.
 */
import { ProtocolError } from '../../../../src/errors';
import { BaseBackupStream, serverArchives, type PausableTransport } from '../../../../src/postgres/replication/baseBackupStream';

const cstr = (s: string) => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.alloc(1)]);
const archive = (name: string, location: string) => Buffer.concat([Buffer.from('n'), cstr(name), cstr(location)]);
const data = (b: Buffer) => Buffer.concat([Buffer.from('d'), b]);
const progress = (n: number) => {
  const p = Buffer.alloc(9);
  p[0] = 0x70;
  p.writeBigInt64BE(BigInt(n), 1);
  return p;
};

/**
 * A server that sends `messages` as long as the transport is not paused, as a socket would (here one
 * message per read; a real socket read holds a few more, at most 64 KiB).
 */
function fakeServer(messages: Buffer[]): { transport: PausableTransport; stream: BaseBackupStream; pauses: number; start(): void } {
  let paused = false;
  let i = 0;
  const state = {
    pauses: 0,
    transport: {
      pause: () => {
        paused = true;
        state.pauses++;
      },
      resume: () => {
        paused = false;
        setImmediate(pump);
      },
    },
    stream: undefined as unknown as BaseBackupStream,
    start: () => setImmediate(pump),
  };
  const pump = () => {
    while (!paused && i < messages.length) state.stream.receive(messages[i++]!);
    if (i === messages.length && !paused) {
      i++;
      state.stream.serverCopyDone();
      state.stream.finish({ lsn: 0x3000100n, timeline: 1 });
    }
  };
  state.stream = new BaseBackupStream(state.transport, { highWaterMark: 8 });
  return state;
}

describe('BaseBackupStream', () => {
  it('pauses the server while its reader is slow: never more than highWaterMark messages buffered, whatever the archive size', async () => {
    // 64 MiB of archive data in 2,048 messages of 32 KiB; the reader takes one message per tick.
    const chunk = Buffer.alloc(32 * 1024, 7);
    const messages = [archive('base.tar', ''), ...Array.from({ length: 2048 }, () => data(chunk))];
    const server = fakeServer(messages);
    server.start();
    let bytes = 0;
    for await (const ev of server.stream) {
      if (ev.type === 'data') bytes += ev.data.length;
      await new Promise((r) => setImmediate(r));
    }
    expect(bytes).toBe(2048 * chunk.length);
    expect(server.pauses).toBeGreaterThan(100); // the reader was slower, so the socket was paused again and again
    // A stream that kept everything would have held thousands of messages (64 MiB) at once.
    expect(server.stream.maxBuffered).toBeLessThanOrEqual(8);
    expect(server.stream.maxBufferedBytes).toBeLessThanOrEqual(8 * chunk.length);
    expect(server.stream.messages).toBe(messages.length);
  });

  it('copies archive data out of the (reused) socket buffer', async () => {
    const stream = new BaseBackupStream({ pause: () => undefined, resume: () => undefined });
    const buf = Buffer.from('dabc');
    stream.receive(archive('base.tar', ''));
    stream.receive(buf);
    buf.write('dxyz');
    stream.serverCopyDone();
    stream.finish({ lsn: 1n, timeline: 1 });
    const events = [];
    for await (const ev of stream) events.push(ev);
    expect(events[1]).toEqual({ type: 'data', data: Buffer.from('abc') });
  });

  it.each([
    ['data before any archive', [data(Buffer.from('x'))]],
    ['a manifest not asked for', [archive('base.tar', ''), Buffer.from('m')]],
    ['an unknown message', [Buffer.from('q')]],
  ])('fails on %s', async (_what, messages) => {
    const stream = new BaseBackupStream({ pause: () => undefined, resume: () => undefined });
    for (const m of messages) stream.receive(m);
    await expect((async () => {
      for await (const _ of stream) void _;
    })()).rejects.toThrow(ProtocolError);
  });

  it('fails when the command completes without the copy having ended', async () => {
    const stream = new BaseBackupStream({ pause: () => undefined, resume: () => undefined });
    stream.finish({ lsn: 1n, timeline: 1 });
    await expect((async () => {
      for await (const _ of stream) void _;
    })()).rejects.toThrow(/without ending the copy/);
  });
});

describe('serverArchives', () => {
  it('gives each archive as one tar (end blocks added), reports progress, and returns the end position', async () => {
    const server = fakeServer([
      archive('16384.tar', '/srv/ts'),
      data(Buffer.from('aa')),
      progress(2),
      data(Buffer.from('bb')),
      archive('base.tar', ''),
      data(Buffer.from('cc')),
      progress(6),
    ]);
    server.start();
    const seen: number[] = [];
    const gen = serverArchives(server.stream, (n) => seen.push(n));
    const got: { name: string; location: string; bytes: Buffer }[] = [];
    let next = await gen.next();
    while (!next.done) {
      const parts: Buffer[] = [];
      for await (const c of next.value.data) parts.push(c);
      got.push({ name: next.value.name, location: next.value.location, bytes: Buffer.concat(parts) });
      next = await gen.next();
    }
    expect(got).toEqual([
      { name: '16384.tar', location: '/srv/ts', bytes: Buffer.concat([Buffer.from('aabb'), Buffer.alloc(1024)]) },
      { name: 'base.tar', location: '', bytes: Buffer.concat([Buffer.from('cc'), Buffer.alloc(1024)]) },
    ]);
    expect(seen).toEqual([2, 6]);
    expect(next.value).toEqual({ lsn: 0x3000100n, timeline: 1 });
  });

  it('refuses to go on when an archive was not read to its end', async () => {
    const server = fakeServer([archive('base.tar', ''), data(Buffer.from('x'))]);
    server.start();
    const gen = serverArchives(server.stream);
    await gen.next();
    await expect(gen.next()).rejects.toThrow(/not read to its end/);
  });
});
