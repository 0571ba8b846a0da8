/**
 * wal-receive's logic (ops/walReceive.ts, receive/segmentArchiver.ts) against the memory store and a
 * fake replication server: real WalStreams over a fake transport, fed by the test, with timers that
 * tick only when the test says so. The fake server moves the slot to each flush position reported,
 * as PostgreSQL does, so every test can check that the slot never passes what the store holds.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeObject } from '../../../src/archive/decode';
import { CLUSTER_KEY, parseReceivedPartialKey, parseWalKey, RECEIVE_ROOT, receiverRecordKey, WAL_ROOT } from '../../../src/archive/layout';
import { feedingSlots } from '../../../src/archive/receivedPartials';
import { META } from '../../../src/archive/objectMeta';
import type { Deps } from '../../../src/deps';
import { IntegrityError, ReplicationSlotError, UnavailableError } from '../../../src/errors';
import { exitCodeFor } from '../../../src/exitCodes';
import { walReceive, type FlushClock, type ReplicationClient, type WalReceiveOptions } from '../../../src/ops/walReceive';
import type { SlotState } from '../../../src/postgres/replication/commands';
import { XLOG_DATA_HEADER_SIZE } from '../../../src/postgres/replication/messages';
import { WalStream, type StatusClock } from '../../../src/postgres/replication/walStream';
import { segmentName, type Lsn } from '../../../src/postgres/walName';
import { MemoryStorage } from '../../../src/storage/memory';
import { RetryBudget } from '../../../src/util/retryBudget';
import { countingStore, testDeps } from '../../helpers/deps';
import { fakeSegment } from '../../helpers/wal';

const SYSID = 7301234567890123456n;
const SEG = 1024 * 1024;
const SEGN = BigInt(SEG);
const SLOT = 'walts_test';

/** Timers that fire only on tick(). */
function manualTimers(): FlushClock & StatusClock & { tick(): void } {
  const fns = new Set<() => void>();
  return {
    now: () => Date.UTC(2026, 11, 3),
    every: (_ms, fn) => {
      fns.add(fn);
      return () => fns.delete(fn);
    },
    tick: () => fns.forEach((f) => f()),
  };
}

/** Lets the receiver run (file I/O included) until `cond` holds. Not a time bound: a step count. */
async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 20_000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 1));
  }
  throw new Error(`never happened: ${what}`);
}

function xlogData(start: bigint, data: Buffer): Buffer {
  const b = Buffer.alloc(XLOG_DATA_HEADER_SIZE);
  b[0] = 0x77;
  b.writeBigUInt64BE(start, 1);
  b.writeBigUInt64BE(start + BigInt(data.length), 9);
  return Buffer.concat([b, data]);
}

/** WAL of a timeline: segment images (with valid long headers) at their positions. */
function walImage(timeline: number, fromSeg: number, count: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    parts.push(fakeSegment(segmentName({ timeline, segNo: fromSeg + i }, SEG), { segSize: SEG, sysid: SYSID, seed: `${timeline}-${fromSeg + i}` }));
  }
  return Buffer.concat(parts);
}

interface FakeServer {
  client: () => Promise<ReplicationClient>;
  slot: { state: SlotState | undefined; active: boolean };
  streams: Array<{ stream: WalStream; start: Lsn; timeline: number; statuses: Array<{ write: bigint; flush: bigint }>; copyDone: boolean }>;
  histories: Map<number, Buffer>;
  /** Every restart_lsn the slot had, with the store's coverage at that moment. */
  slotMoves: Array<{ restart: Lsn; storeHolds: Lsn }>;
  startError?: Error;
  created: number;
}

/** How far the store holds the WAL of `timeline` from `from`: complete segments, then one .partial. */
function storeCoverage(storage: MemoryStorage, timeline: number): Lsn {
  const segs = new Set<string>();
  const partials = new Map<string, number>();
  for (const [key, e] of storage.objects) {
    const w = parseWalKey(key);
    if (w && w.name.kind === 'segment') segs.add(w.name.name);
    const p = parseReceivedPartialKey(key);
    if (p) partials.set(p.segment, Number(e.metadata[META.size]));
  }
  let best = 0n;
  for (let segNo = 0; segNo < 64; segNo++) {
    const name = segmentName({ timeline, segNo }, SEG);
    if (segs.has(name)) best = BigInt(segNo + 1) * SEGN;
    else if (partials.has(name)) best = BigInt(segNo) * SEGN + BigInt(partials.get(name)!);
  }
  return best;
}

function fakeServer(storage: MemoryStorage, slot: SlotState | undefined): FakeServer {
  const server: FakeServer = { client: undefined as never, slot: { state: slot, active: false }, streams: [], histories: new Map(), slotMoves: [], created: 0 };
  server.client = async () => {
    let streaming: FakeServer['streams'][number] | undefined;
    return {
      identifySystem: async () => ({ systemId: SYSID.toString(), timeline: 1, xlogPos: 5n * SEGN }),
      show: async (name) => (name === 'wal_segment_size' ? '1MB' : undefined),
      readReplicationSlot: async () => server.slot.state,
      createPhysicalSlot: async () => {
        server.created++;
        server.slot.state = { type: 'physical', restartLsn: 2n * SEGN + 100n, restartTimeline: 1 };
      },
      timelineHistory: async (tli) => ({ fileName: `${tli.toString(16).toUpperCase().padStart(8, '0')}.history`, content: server.histories.get(tli)! }),
      startPhysical: async (opts) => {
        if (server.startError) throw server.startError;
        if (server.slot.active) throw new ReplicationSlotError(`replication slot "${SLOT}" is in use by another connection`, SLOT, 'in-use', 1234);
        server.slot.active = true;
        const entry = { stream: undefined as unknown as WalStream, start: opts.start, timeline: opts.timeline, statuses: [] as Array<{ write: bigint; flush: bigint }>, copyDone: false };
        const stream = new WalStream(
          {
            sendCopyData: (b) => {
              const write = b.readBigUInt64BE(1);
              const flush = b.readBigUInt64BE(9);
              entry.statuses.push({ write, flush });
              if (flush !== 0n && server.slot.state) {
                server.slot.state = { ...server.slot.state, restartLsn: flush };
                server.slotMoves.push({ restart: flush, storeHolds: storeCoverage(storage, opts.timeline) });
              }
            },
            sendCopyDone: () => {
              entry.copyDone = true;
              // The server answers CopyDone with its own and completes the command.
              queueMicrotask(() => {
                stream.serverCopyDone();
                stream.finish(undefined);
                server.slot.active = false;
              });
            },
            pause: () => undefined,
            resume: () => undefined,
          },
          { start: opts.start, ...(opts.statusIntervalMs !== undefined ? { statusIntervalMs: opts.statusIntervalMs } : {}), ...(opts.clock ? { clock: opts.clock } : {}) },
        );
        entry.stream = stream;
        streaming = entry;
        server.streams.push(entry);
        return stream;
      },
      close: async () => {
        if (streaming) server.slot.active = false;
      },
    };
  };
  return server;
}

/** Sends `image` (WAL from `from`) in messages of `chunk` bytes. */
function send(stream: WalStream, from: Lsn, image: Buffer, offset: number, length: number, chunk = 64 * 1024): void {
  for (let o = offset; o < offset + length; o += chunk) {
    const n = Math.min(chunk, offset + length - o);
    stream.receive(xlogData(from + BigInt(o), image.subarray(o, o + n)));
  }
}

async function decoded(deps: Deps, key: string): Promise<Buffer> {
  const obj = await deps.storage.get(key);
  const codecs = parseWalKey(key)?.codecs ?? parseReceivedPartialKey(key)!.codecs;
  const chunks: Buffer[] = [];
  await decodeObject(deps, obj, codecs, async (s) => {
    for await (const c of s) chunks.push(Buffer.from(c));
  });
  return Buffer.concat(chunks);
}

function keysUnder(storage: MemoryStorage, prefix: string): string[] {
  return [...storage.objects.keys()].filter((k) => k.startsWith(prefix)).sort();
}

/** The received partials (receive/ also holds each slot's receiver.json). */
function partialKeys(storage: MemoryStorage): string[] {
  return keysUnder(storage, RECEIVE_ROOT).filter((k) => parseReceivedPartialKey(k) !== undefined);
}

let staging: string;
let controller: AbortController;
let timers: ReturnType<typeof manualTimers>;

beforeEach(() => {
  staging = mkdtempSync(join(tmpdir(), 'walts-receive-unit-'));
  controller = new AbortController();
  timers = manualTimers();
});
afterEach(() => {
  controller.abort();
  rmSync(staging, { recursive: true, force: true });
});

function options(server: FakeServer, extra: Partial<WalReceiveOptions> = {}): WalReceiveOptions {
  return {
    slot: SLOT,
    createSlot: false,
    flushIntervalMs: 1000,
    statusIntervalMs: 10_000,
    stagingDir: staging,
    connect: server.client,
    signal: controller.signal,
    flushClock: timers,
    statusClock: timers,
    stopTimeoutMs: 1000,
    ...extra,
  };
}

/** The slot's restart_lsn was never past what the store held when it moved. */
function expectSlotNeverPastStore(server: FakeServer): void {
  for (const m of server.slotMoves) expect(m.restart).toBeLessThanOrEqual(m.storeHolds);
}

describe('wal-receive with a fake server and the memory store', () => {
  test('segments archived byte for byte, the segment in progress kept as a growing .partial, deleted once complete; flush only what the store holds', async () => {
    const storage = new MemoryStorage();
    const deps = testDeps(storage);
    const server = fakeServer(storage, { type: 'physical', restartLsn: 2n * SEGN + 4096n, restartTimeline: 1 });
    const running = walReceive(deps, options(server));
    await until('streaming', () => server.streams.length === 1);
    const { stream, start } = server.streams[0]!;
    expect(start).toBe(2n * SEGN); // the segment boundary of restart_lsn
    const image = walImage(1, 2, 3);

    // Half a segment, then a flush tick: the .partial holds exactly those bytes (not padded).
    send(stream, start, image, 0, SEG / 2);
    await until('staged', () => stream.readableLength === 0);
    timers.tick();
    const seg2 = '000000010000000000000002';
    await until('.partial written', () => partialKeys(storage).length === 1);
    const partialKey = partialKeys(storage)[0]!;
    expect(partialKey).toBe(`${RECEIVE_ROOT}/${SLOT}/${seg2}.partial.lz4`);
    expect((await decoded(deps, partialKey)).equals(image.subarray(0, SEG / 2))).toBe(true);
    const meta = storage.objects.get(partialKey)!.metadata;
    expect(meta[META.size]).toBe(String(SEG / 2));
    expect(meta[META.systemId]).toBe(SYSID.toString());
    expect(meta[META.storedSize]).toBe(String(storage.objects.get(partialKey)!.data.length));
    // The archive had no cluster record: the first write claimed it for this cluster.
    expect(JSON.parse(storage.objects.get(CLUSTER_KEY)!.data.toString()).system_identifier).toBe(SYSID.toString());
    await until('flush reported', () => server.slot.state!.restartLsn === start + BigInt(SEG / 2));

    // It grows.
    send(stream, start, image, SEG / 2, SEG / 4);
    await until('staged', () => stream.readableLength === 0);
    timers.tick();
    await until('.partial grown', () => storage.objects.get(partialKey)?.metadata[META.size] === String((SEG * 3) / 4));

    // The rest of segment 2 and half of 3: segment 2 archived, its .partial gone, one for segment 3 after a tick.
    send(stream, start, image, (SEG * 3) / 4, SEG / 4 + SEG / 2);
    await until('segment 2 archived', () => storage.objects.has(`${WAL_ROOT}/0000000100000000/${seg2}.lz4`) && !storage.objects.has(partialKey));
    expect((await decoded(deps, `${WAL_ROOT}/0000000100000000/${seg2}.lz4`)).equals(image.subarray(0, SEG))).toBe(true);
    await until('flush at the segment end', () => server.slot.state!.restartLsn === 3n * SEGN);
    timers.tick();
    await until('.partial of segment 3', () => partialKeys(storage).some((k) => k.includes('000000010000000000000003')));
    // No new WAL since the last flush: a tick writes nothing.
    const puts = storage.objects.get(partialKeys(storage)[0]!)!.lastModified;
    timers.tick();
    await new Promise((r) => setTimeout(r, 20));
    expect(storage.objects.get(partialKeys(storage)[0]!)!.lastModified).toBe(puts);

    // Written = received, flush = what the store holds, in every status sent.
    for (const s of server.streams[0]!.statuses) expect(s.flush).toBeLessThanOrEqual(s.write);
    expectSlotNeverPastStore(server);
    controller.abort();
    const r = await running;
    expect(r).toEqual({ slot: SLOT, timeline: 1, flushed: '0/380000', reconnects: 0 });
    expect(server.streams[0]!.copyDone).toBe(true);
    expect(readdirSync(staging)).toEqual([]);
  });

  test('SIGTERM: what was received is flushed as .partial and reported before CopyDone', async () => {
    const storage = new MemoryStorage();
    const deps = testDeps(storage);
    const server = fakeServer(storage, { type: 'physical', restartLsn: 2n * SEGN, restartTimeline: 1 });
    const running = walReceive(deps, options(server));
    await until('streaming', () => server.streams.length === 1);
    const { stream, start, statuses } = server.streams[0]!;
    const image = walImage(1, 2, 1);
    send(stream, start, image, 0, 300_000);
    await until('staged', () => stream.readableLength === 0);
    controller.abort();
    await running;
    expect(storage.objects.get(`${RECEIVE_ROOT}/${SLOT}/000000010000000000000002.partial.lz4`)?.metadata[META.size]).toBe('300000');
    expect(statuses[statuses.length - 1]).toEqual({ write: start + 300_000n, flush: start + 300_000n });
    expect(server.slot.state!.restartLsn).toBe(start + 300_000n);
    expectSlotNeverPastStore(server);
  });

  test('each session writes receive/<slot>/receiver.json once streaming starts (before any WAL), overwriting the last; it alone shows the receiver', async () => {
    const storage = new MemoryStorage();
    const deps = testDeps(storage);
    const server = fakeServer(storage, { type: 'physical', restartLsn: 2n * SEGN, restartTimeline: 1 });
    const recordOf = () => JSON.parse(storage.objects.get(receiverRecordKey(SLOT))!.data.toString('utf8')) as Record<string, unknown>;
    const first = new AbortController();
    let running = walReceive(deps, options(server, { signal: first.signal }));
    await until('record written', () => storage.objects.has(receiverRecordKey(SLOT)));
    expect(recordOf()).toEqual({ slot: SLOT, system_identifier: SYSID.toString(), timeline: 1, host: 'test-host', pid: process.pid, started_at: '2026-11-21T12:00:00.000Z', walts_version: 'test' });
    // No WAL yet, so no partial (an idle server right after a switch): the record shows the receiver.
    expect(partialKeys(storage)).toEqual([]);
    expect([...(await feedingSlots(storage, SYSID.toString()))]).toEqual([SLOT]);
    expect([...(await feedingSlots(storage, '42'))]).toEqual([]);
    first.abort();
    await running;
    expect(storage.objects.has(receiverRecordKey(SLOT))).toBe(true); // a stop leaves it: it names the slot's receiver, not a live process

    controller = new AbortController();
    running = walReceive({ ...deps, now: () => new Date('2026-11-22T06:00:00Z') }, options(server));
    await until('record overwritten', () => recordOf().started_at === '2026-11-22T06:00:00.000Z');
    controller.abort();
    await running;
    expect(keysUnder(storage, RECEIVE_ROOT)).toEqual([receiverRecordKey(SLOT)]);
  });

  test('after a restart the segment is received again, and its .partial is never rewritten shorter than what the store holds', async () => {
    const storage = new MemoryStorage();
    const deps = testDeps(storage);
    const server = fakeServer(storage, { type: 'physical', restartLsn: 2n * SEGN, restartTimeline: 1 });
    const image = walImage(1, 2, 2);
    const first = new AbortController();
    let running = walReceive(deps, options(server, { signal: first.signal }));
    await until('streaming', () => server.streams.length === 1);
    send(server.streams[0]!.stream, 2n * SEGN, image, 0, 600_000);
    await until('staged', () => server.streams[0]!.stream.readableLength === 0);
    first.abort();
    await running;
    const key = `${RECEIVE_ROOT}/${SLOT}/000000010000000000000002.partial.lz4`;
    expect(storage.objects.get(key)!.metadata[META.size]).toBe('600000');
    expect(server.slot.state!.restartLsn).toBe(2n * SEGN + 600_000n);

    // Second run: starts at the segment boundary again; 100 kB received and a tick write nothing.
    running = walReceive(deps, options(server));
    await until('streaming again', () => server.streams.length === 2);
    const { stream, start } = server.streams[1]!;
    expect(start).toBe(2n * SEGN);
    send(stream, start, image, 0, 100_000);
    await until('staged', () => stream.readableLength === 0);
    timers.tick();
    await new Promise((r) => setTimeout(r, 20));
    expect(storage.objects.get(key)!.metadata[META.size]).toBe('600000');
    // Past what the store held: rewritten, longer.
    send(stream, start, image, 100_000, 600_000);
    await until('staged', () => stream.readableLength === 0);
    timers.tick();
    await until('rewritten longer', () => storage.objects.get(key)!.metadata[META.size] === '700000');
    // The segment completes: archived identical to the source, .partial deleted.
    send(stream, start, image, 700_000, SEG - 700_000);
    await until('archived', () => !storage.objects.has(key) && storage.objects.has(`${WAL_ROOT}/0000000100000000/000000010000000000000002.lz4`));
    expectSlotNeverPastStore(server);
    controller.abort();
    await running;
  });

  test('--synchronous: what was received is flushed without waiting for the flush interval, and reported at once', async () => {
    const storage = new MemoryStorage();
    const deps = testDeps(storage);
    const server = fakeServer(storage, { type: 'physical', restartLsn: 2n * SEGN, restartTimeline: 1 });
    const running = walReceive(deps, options(server, { synchronous: true }));
    await until('streaming', () => server.streams.length === 1);
    const { stream, start, statuses } = server.streams[0]!;
    send(stream, start, walImage(1, 2, 1), 0, 5000);
    // No tick: the flush follows the write.
    await until('flushed and reported', () => statuses.some((st) => st.flush === start + 5000n));
    expect(storage.objects.get(`${RECEIVE_ROOT}/${SLOT}/000000010000000000000002.partial.lz4`)?.metadata[META.size]).toBe('5000');
    controller.abort();
    await running;
  });

  test('a stream that fails (the server is gone): what was received is written to the store first', async () => {
    const storage = new MemoryStorage();
    const deps = testDeps(storage);
    const server = fakeServer(storage, { type: 'physical', restartLsn: 2n * SEGN, restartTimeline: 1 });
    const running = walReceive(deps, options(server));
    await until('streaming', () => server.streams.length === 1);
    const { stream, start } = server.streams[0]!;
    const image = walImage(1, 2, 1);
    send(stream, start, image, 0, 123_456);
    await until('staged', () => stream.readableLength === 0);
    // No tick: only the failure makes it flush.
    server.startError = new ReplicationSlotError('stop here', SLOT, 'missing');
    stream.fail(new UnavailableError('server closed the connection unexpectedly', { transient: true }));
    await expect(running).rejects.toThrow('stop here');
    const key = `${RECEIVE_ROOT}/${SLOT}/000000010000000000000002.partial.lz4`;
    expect((await decoded(deps, key)).equals(image.subarray(0, 123_456))).toBe(true);
  });

  test('an archive without a cluster record: claimed once by the first segment, not once per segment', async () => {
    const storage = countingStore();
    const deps = testDeps(storage);
    const server = fakeServer(storage, { type: 'physical', restartLsn: 2n * SEGN, restartTimeline: 1 });
    const running = walReceive(deps, options(server));
    await until('streaming', () => server.streams.length === 1);
    send(server.streams[0]!.stream, 2n * SEGN, walImage(1, 2, 3), 0, 3 * SEG);
    await until('three segments', () => server.slot.state!.restartLsn === 5n * SEGN);
    expect(storage.puts.filter((k) => k === CLUSTER_KEY)).toEqual([CLUSTER_KEY]);
    expect(storage.puts.filter((k) => k.startsWith(WAL_ROOT))).toHaveLength(3);
    controller.abort();
    await running;
  });

  test('the same segment already archived by archive_command: deduplicated, not a conflict', async () => {
    const storage = new MemoryStorage();
    const deps = testDeps(storage);
    const image = walImage(1, 2, 1);
    // What wal-push would have stored: the receiver's push goes through the same path.
    const { walPush } = await import('../../../src/ops/walPush');
    const { writeFileSync, mkdirSync } = await import('node:fs');
    const pgdata = join(staging, 'pgdata');
    mkdirSync(join(pgdata, 'pg_wal'), { recursive: true });
    writeFileSync(join(pgdata, 'pg_wal', '000000010000000000000002'), image);
    await walPush(deps, { path: 'pg_wal/000000010000000000000002', cwd: pgdata });
    const before = storage.objects.get(`${WAL_ROOT}/0000000100000000/000000010000000000000002.lz4`)!.lastModified;

    const server = fakeServer(storage, { type: 'physical', restartLsn: 2n * SEGN, restartTimeline: 1 });
    const running = walReceive(deps, options(server));
    await until('streaming', () => server.streams.length === 1);
    send(server.streams[0]!.stream, 2n * SEGN, image, 0, SEG);
    await until('flush at the segment end', () => server.slot.state!.restartLsn === 3n * SEGN);
    expect(storage.objects.get(`${WAL_ROOT}/0000000100000000/000000010000000000000002.lz4`)!.lastModified).toBe(before);
    controller.abort();
    await running;
  });

  test('a store of another cluster: refused (exit 3) before anything is written', async () => {
    const storage = new MemoryStorage();
    const deps = testDeps(storage);
    const record = { format: 1, system_identifier: '42', wal_page_magic: 0xd110, wal_segment_size: SEG, created_at: 'x', created_by: 'y' };
    storage.objects.set(CLUSTER_KEY, { data: Buffer.from(JSON.stringify(record)), metadata: {}, lastModified: new Date() });
    const keys = [...storage.objects.keys()];
    const server = fakeServer(storage, { type: 'physical', restartLsn: 2n * SEGN, restartTimeline: 1 });
    const err = await walReceive(deps, options(server)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as Error).message).toMatch(/the server is database system 7301234567890123456, but this store belongs to system 42/);
    expect(exitCodeFor('wal-receive', err)).toBe(3);
    expect([...storage.objects.keys()]).toEqual(keys);
    expect(server.streams).toHaveLength(0);
  });

  test('a missing slot: exit 2 with a hint; --create-slot creates it (RESERVE_WAL) and starts at its restart_lsn', async () => {
    const storage = new MemoryStorage();
    const deps = testDeps(storage);
    const server = fakeServer(storage, undefined);
    const err = await walReceive(deps, options(server)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReplicationSlotError);
    expect((err as Error).message).toMatch(/^replication slot "walts_test" does not exist on this server \(create it with --create-slot/);
    expect(exitCodeFor('wal-receive', err)).toBe(2);

    const running = walReceive(deps, options(server, { createSlot: true }));
    await until('streaming', () => server.streams.length === 1);
    expect(server.created).toBe(1);
    expect(server.streams[0]!.start).toBe(2n * SEGN);
    controller.abort();
    await running;
  });

  test('a slot in use when the command starts: refused at once (exit 2), not retried', async () => {
    const storage = new MemoryStorage();
    const deps = testDeps(storage);
    const server = fakeServer(storage, { type: 'physical', restartLsn: 2n * SEGN, restartTimeline: 1 });
    server.slot.active = true;
    const err = await walReceive(deps, options(server)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReplicationSlotError);
    expect((err as ReplicationSlotError).reason).toBe('in-use');
    expect(exitCodeFor('wal-receive', err)).toBe(2);
  });

  test('a lost connection: reconnects from the slot after a backoff; exit 4 once the retry budget is spent', async () => {
    const storage = new MemoryStorage();
    let now = 0;
    const slept: number[] = [];
    const deps: Deps = {
      ...testDeps(storage),
      retry: new RetryBudget({ deadlineMs: 60_000, clock: { now: () => now, random: () => 0.5, sleep: async (ms) => void (slept.push(ms), (now += ms)) } }),
    };
    const server = fakeServer(storage, { type: 'physical', restartLsn: 2n * SEGN, restartTimeline: 1 });
    const image = walImage(1, 2, 1);
    const running = walReceive(deps, options(server));
    await until('streaming', () => server.streams.length === 1);
    send(server.streams[0]!.stream, 2n * SEGN, image, 0, 200_000);
    await until('staged', () => server.streams[0]!.stream.readableLength === 0);
    timers.tick();
    await until('flushed', () => server.slot.state!.restartLsn === 2n * SEGN + 200_000n);
    server.slot.active = false;
    server.streams[0]!.stream.fail(new UnavailableError('terminating connection due to administrator command', { transient: true }));
    await until('streaming again', () => server.streams.length === 2);
    expect(slept).toHaveLength(1);
    expect(server.streams[1]!.start).toBe(2n * SEGN);

    // The server stays away: every attempt fails until the deadline, then the last error ends the command.
    server.startError = new UnavailableError('connection refused', { transient: true });
    server.slot.active = false;
    server.streams[1]!.stream.fail(new UnavailableError('connection reset', { transient: true }));
    const err = await running.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect(exitCodeFor('wal-receive', err)).toBe(4);
    expect(now).toBeGreaterThanOrEqual(60_000);
    expectSlotNeverPastStore(server);
  });

  test('the end of a timeline: its last segment kept as .partial, the history file archived, streaming goes on at the boundary on the next timeline', async () => {
    const storage = new MemoryStorage();
    const deps = testDeps(storage);
    const server = fakeServer(storage, { type: 'physical', restartLsn: 2n * SEGN, restartTimeline: 1 });
    const history = Buffer.from('1\t0/280000\tno recovery target specified\n');
    server.histories.set(2, history);
    const running = walReceive(deps, options(server));
    await until('streaming', () => server.streams.length === 1);
    const tl1 = walImage(1, 2, 1);
    const first = server.streams[0]!;
    send(first.stream, 2n * SEGN, tl1, 0, 0x80000); // up to the switch point 0/280000
    first.stream.serverCopyDone();
    first.stream.finish({ nextTimeline: 2, nextTimelineStart: 2n * SEGN + 0x80000n });
    server.slot.active = false;
    await until('timeline 2', () => server.streams.length === 2);
    const second = server.streams[1]!;
    expect(second.timeline).toBe(2);
    expect(second.start).toBe(2n * SEGN);
    expect((await decoded(deps, `${WAL_ROOT}/history/00000002.history.lz4`)).equals(history)).toBe(true);
    const oldPartial = `${RECEIVE_ROOT}/${SLOT}/000000010000000000000002.partial.lz4`;
    expect((await decoded(deps, oldPartial)).equals(tl1.subarray(0, 0x80000))).toBe(true);

    const tl2 = walImage(2, 2, 1);
    send(second.stream, 2n * SEGN, tl2, 0, SEG);
    await until('archived on timeline 2', () => storage.objects.has(`${WAL_ROOT}/0000000200000000/000000020000000000000002.lz4`));
    expect(storage.objects.has(oldPartial)).toBe(true); // the old timeline's segment never completes
    controller.abort();
    const r = await running;
    expect(r.timeline).toBe(2);
  });
});
