/**
 * The physical replication protocol client (src/postgres/replication/) against a real PostgreSQL 15
 * over TCP (with TLS, and once without), as a replication user whose SCRAM password comes from a .pgpass file: slot commands,
 * WAL streamed while pgbench writes (equal to the server's own pg_wal segments byte for byte), the
 * slot advancing only to a reported flush position, a second receiver refused, and a historic
 * timeline ending with the next timeline's start.
 */
import * as fs from 'fs';
import * as path from 'path';
import { ReplicationSlotError, UnavailableError } from '../../../src/errors';
import { ReplicationConnection } from '../../../src/postgres/replication/connection';
import type { StatusClock, WalStream, WalStreamEvent } from '../../../src/postgres/replication/walStream';
import { DEFAULT_SEGMENT_SIZE, Lsn, formatLsn, parseLsn, segmentName } from '../../../src/postgres/walName';
import { Cluster, chownToPg, trackClusters } from '../../helpers/pg';
import { runOk } from '../../helpers/run';

const reg = trackClusters();
const PASSWORD = 'rep:l1cation\\secret';
const SLOT = 'walts_test';
const SEG = BigInt(DEFAULT_SEGMENT_SIZE);
let pg: Cluster;
let env: Record<string, string>;
const connections: ReplicationConnection[] = [];

/** A status clock whose timer only fires when the test says so (no wall-clock dependence). */
function manualClock(): StatusClock & { tick(): void } {
  const fns = new Set<() => void>();
  return {
    now: () => Date.now(),
    every: (_ms, fn) => {
      fns.add(fn);
      return () => fns.delete(fn);
    },
    tick: () => fns.forEach((f) => f()),
  };
}

async function open(extra: Record<string, string> = {}): Promise<ReplicationConnection> {
  const c = await ReplicationConnection.open({ env: { ...env, ...extra } });
  connections.push(c);
  return c;
}

async function slotRestartLsn(): Promise<Lsn> {
  return parseLsn(await pg.psql(`select restart_lsn from pg_replication_slots where slot_name = '${SLOT}'`));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, f: () => Promise<boolean>, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await f())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Write each XLogData at its offset in segment-sized files named like pg_wal's (a message may cross a segment end). */
function writeWal(dir: string, timeline: number, start: Lsn, data: Buffer): void {
  let lsn = start;
  let rest = data;
  while (rest.length > 0) {
    const segNo = lsn / SEG;
    const offset = Number(lsn % SEG);
    const n = Math.min(rest.length, DEFAULT_SEGMENT_SIZE - offset);
    const file = path.join(dir, segmentName({ timeline, segNo: Number(segNo) }));
    const fd = fs.openSync(file, fs.existsSync(file) ? 'r+' : 'w');
    try {
      fs.writeSync(fd, rest, 0, n, offset);
    } finally {
      fs.closeSync(fd);
    }
    lsn += BigInt(n);
    rest = rest.subarray(n);
  }
}

/**
 * Consume the stream, writing WAL, until `until(consumed)` (the end of the WAL taken from the stream
 * so far) or the stream ends; returns the events that were not WAL, and where the WAL taken ends.
 */
async function consume(stream: WalStream, dir: string, timeline: number, until: (consumed: Lsn) => boolean): Promise<{ other: WalStreamEvent[]; consumed: Lsn }> {
  const other: WalStreamEvent[] = [];
  let consumed = stream.start;
  // destroyOnReturn false: leaving the loop must not end the stream (the test goes on with it).
  for await (const ev of stream.iterator({ destroyOnReturn: false }) as AsyncIterable<WalStreamEvent>) {
    if (ev.type === 'xlog-data') {
      writeWal(dir, timeline, ev.start, ev.data);
      consumed = ev.start + BigInt(ev.data.length);
    } else other.push(ev);
    if (until(consumed)) break;
  }
  return { other, consumed };
}

beforeAll(async () => {
  // TLS on: the stream's backpressure pauses the socket pg reads from, which is the TLS socket then.
  const certs = await reg.tempDir('certs', { forPostgres: true });
  await runOk('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.crt', '-subj', '/CN=localhost', '-days', '2'], { cwd: certs });
  for (const f of ['server.key', 'server.crt']) {
    await chownToPg(path.join(certs, f));
    fs.chmodSync(path.join(certs, f), 0o600);
  }
  // wal_sender_timeout off: the test stops reading on purpose (backpressure) while its status timer
  // is manual, and a loaded machine must not turn that into a disconnect.
  pg = await reg.createCluster({
    name: 'walrecv',
    conf: { wal_sender_timeout: '0', ssl: 'on', ssl_cert_file: path.join(certs, 'server.crt'), ssl_key_file: path.join(certs, 'server.key') },
  });
  const hba = path.join(pg.dataDir, 'pg_hba.conf');
  // The unix socket stays trust (the harness' psql and pgbench use it); replication over TCP needs SCRAM.
  fs.writeFileSync(hba, 'local all all trust\nhost replication all 127.0.0.1/32 scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n');
  await chownToPg(hba);
  await pg.start();
  const pw = PASSWORD.replace(/'/g, "''");
  await pg.psql(`create role walrecv login replication password '${pw}'; create role norepl login password '${pw}'`);
  const dir = await reg.tempDir('pgpass');
  const passFile = path.join(dir, 'pgpass');
  // The database field is `replication`, as for pg_receivewal; `:` and `\` in the password are escaped.
  const escaped = PASSWORD.replace(/([:\\])/g, '\\$1');
  fs.writeFileSync(passFile, `127.0.0.1:${pg.port}:replication:walrecv:${escaped}\n127.0.0.1:${pg.port}:replication:norepl:${escaped}\n`, { mode: 0o600 });
  env = { PGHOST: '127.0.0.1', PGPORT: String(pg.port), PGUSER: 'walrecv', PGDATABASE: 'postgres', PGPASSFILE: passFile, PGSSLMODE: 'require' };
});

afterAll(async () => {
  for (const c of connections) await c.close();
  await reg.cleanupAll();
});

describe('physical replication over TCP with a .pgpass password', () => {
  let flushed: Lsn;

  test('slot, streaming during pgbench (segments equal pg_wal), flush feedback moves the slot, a second receiver is refused', async () => {
    const conn = await open();
    expect(conn.session.target).toEqual({ host: '127.0.0.1', port: pg.port, user: 'walrecv', database: 'replication', ssl: true });
    const id = await conn.identifySystem();
    expect(id.systemId).toBe((await pg.controlData())['Database system identifier']);
    expect(id.timeline).toBe(1);
    expect(id.xlogPos).toBeGreaterThan(0n);

    expect(await conn.readReplicationSlot(SLOT)).toBeUndefined();
    await conn.createPhysicalSlot(SLOT, { reserveWal: true });
    const again = await conn.createPhysicalSlot(SLOT, { reserveWal: true }).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(ReplicationSlotError);
    expect((again as ReplicationSlotError).reason).toBe('exists');
    const slot = await conn.readReplicationSlot(SLOT);
    expect(slot).toEqual({ type: 'physical', restartLsn: expect.any(BigInt), restartTimeline: 1 });
    const reserved = slot!.restartLsn!;
    expect(await slotRestartLsn()).toBe(reserved);

    // Whole segments, as pg_receivewal: start at the boundary of the segment holding restart_lsn.
    const start = (reserved / SEG) * SEG;
    const clock = manualClock();
    const HIGH_WATER_MARK = 4;
    const stream = await conn.startPhysical({ slot: SLOT, start, timeline: 1, statusIntervalMs: 10_000, clock, highWaterMark: HIGH_WATER_MARK });
    const out = await reg.tempDir('received');

    const writer = (async () => {
      await pg.pgbench(['-i', '-s', '2', '-q', 'postgres']);
      await pg.pgbench(['-c', '2', '-t', '300', 'postgres']);
      // Complete the segment in progress so that every segment up to here is final in pg_wal.
      return parseLsn(await pg.psql('select pg_switch_wal()'));
    })();
    // Streaming while pgbench writes: take the first MiB, then stop reading until pgbench is done.
    const first = await consume(stream, out, 1, (consumed) => consumed >= start + 1024n * 1024n);
    const switched = await writer;
    // Backpressure: the WAL written meanwhile waits on the server (and in socket buffers), not in our
    // memory: the stream holds at most its high-water mark of messages (128 KiB each at most) plus one
    // socket read, while the server is many MiB ahead.
    const serverAhead = parseLsn(await pg.psql('select pg_current_wal_flush_lsn()')) - stream.received;
    const buffered = stream.received - first.consumed;
    expect(serverAhead).toBeGreaterThan(8n * 1024n * 1024n);
    expect(buffered).toBeLessThanOrEqual(BigInt((HIGH_WATER_MARK + 1) * 128 * 1024));
    expect(stream.readableLength).toBeLessThanOrEqual(HIGH_WATER_MARK + 64);

    const end = ((switched - 1n) / SEG + 1n) * SEG;
    const rest = await consume(stream, out, 1, (consumed) => consumed >= end);
    expect(end / SEG - start / SEG).toBeGreaterThanOrEqual(2n); // segments went by (a boundary was crossed)
    expect([...first.other, ...rest.other].every((e) => e.type === 'keepalive')).toBe(true);

    // Byte for byte: every completed segment equals the server's own file.
    for (let seg = start / SEG; seg < end / SEG; seg++) {
      const name = segmentName({ timeline: 1, segNo: Number(seg) });
      const ours = fs.readFileSync(path.join(out, name));
      const theirs = fs.readFileSync(path.join(pg.dataDir, 'pg_wal', name));
      expect(ours.length).toBe(DEFAULT_SEGMENT_SIZE);
      expect(ours.equals(theirs)).toBe(true);
    }

    // The slot is in use: a second receiver (this one without TLS) is refused, naming the walsender that holds it.
    const second = await open({ PGSSLMODE: 'disable' });
    expect(second.session.target.ssl).toBe(false);
    const refused = await second.startPhysical({ slot: SLOT, start, timeline: 1 }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ReplicationSlotError);
    expect((refused as ReplicationSlotError).reason).toBe('in-use');
    expect((refused as ReplicationSlotError).activePid).toBe(conn.session.backendPid);
    expect((refused as Error).message).toMatch(new RegExp(`^replication slot "${SLOT}" is in use by another connection \\(server process ${conn.session.backendPid}\\): refusing to be a second receiver`));
    expect((refused as Error).message).not.toContain('\n');
    // A missing slot, on the same connection (a refused START_REPLICATION leaves it usable).
    const missing = await second.startPhysical({ slot: 'no_such_slot', start, timeline: 1 }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(ReplicationSlotError);
    expect((missing as ReplicationSlotError).reason).toBe('missing');

    // Nothing reported as flushed yet: the slot has not moved (keepalive replies carried flush 0).
    expect(await slotRestartLsn()).toBe(reserved);
    stream.report({ write: stream.received, flush: end });
    expect(await slotRestartLsn()).toBe(reserved); // reported, not yet sent: the timer has not fired
    clock.tick();
    await waitFor(`restart_lsn ${formatLsn(end)}`, async () => (await slotRestartLsn()) === end);
    flushed = end;

    stream.stop();
    const after = (await consume(stream, out, 1, () => false)).other;
    expect(after.some((e) => e.type === 'end-of-timeline')).toBe(false);
    expect(stream.readableEnded).toBe(true);
    // The connection is usable again after the stream.
    expect((await conn.identifySystem()).timeline).toBe(1);
  });

  test('a historic timeline streams to its end, then names the next timeline and where it starts', async () => {
    expect(flushed).toBeDefined();
    for (const c of connections.splice(0)) await c.close();
    // End of archive recovery without an archive: the server picks timeline 2 (a cheap promotion).
    await pg.stop('fast');
    await pg.setRecovery({ restore_command: 'false' });
    await pg.start();
    await pg.waitForRecoveryEnd();

    const conn = await open();
    expect((await conn.identifySystem()).timeline).toBe(2);
    const history = await conn.timelineHistory(2);
    expect(history.fileName).toBe('00000002.history');
    expect(history.content.equals(fs.readFileSync(path.join(pg.dataDir, 'pg_wal', '00000002.history')))).toBe(true);
    const switchLsn = parseLsn(/^1\t([0-9A-F]+\/[0-9A-F]+)\t/m.exec(history.content.toString())![1]!);

    const stream = await conn.startPhysical({ slot: SLOT, start: flushed, timeline: 1 });
    const out = await reg.tempDir('timeline1');
    const { other: events } = await consume(stream, out, 1, () => false);
    expect(events[events.length - 1]).toEqual({ type: 'end-of-timeline', nextTimeline: 2, nextTimelineStart: switchLsn });
    expect(stream.received).toBe(switchLsn);

    // Follow onto timeline 2; a walsender that goes away ends the stream with a transient error.
    const next = await conn.startPhysical({ slot: SLOT, start: switchLsn, timeline: 2 });
    await pg.psql(`select pg_terminate_backend(${conn.session.backendPid})`);
    const lost = await consume(next, out, 2, () => false).catch((e: unknown) => e);
    expect(lost).toBeInstanceOf(UnavailableError);
    expect((lost as UnavailableError).transient).toBe(true);
    expect((lost as Error).message).toMatch(/terminating connection due to administrator command/);
    expect((lost as Error).message).not.toContain('\n');
  });

  test('a role without REPLICATION is refused with the server reason', async () => {
    const e = await open({ PGUSER: 'norepl' }).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(Error);
    expect((e as Error).message).toMatch(/must be superuser or replication role to start walsender .*SQLSTATE 42501/);
    expect((e as Error).message).not.toContain('l1cation');
  });
});
