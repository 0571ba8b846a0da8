/**
 * `walts wal-receive` as an operator runs it: the real CLI as a long-running process, PostgreSQL 15
 * over TCP with a SCRAM password from a .pgpass file, archive_mode off (the receiver is the only way
 * WAL reaches the archive), a directory store and s3rver behind the fault proxy.
 *
 * Shown: segments in the store equal pg_wal's byte for byte; the segment in progress is a growing
 * .partial, deleted once the segment is archived; a receiver killed with SIGKILL mid-segment and
 * restarted leaves no gap and no conflict; the slot's restart_lsn is never past what the store holds
 * (checked at several points); a second receiver on the slot is refused (exit 2); SIGTERM stops it
 * cleanly and it dies by that signal; a store answering 503 or cutting connections holds the slot
 * back and the receiver catches up afterwards; a primary killed right after a commit leaves the
 * commit in the store; a standby's slot is followed across the standby's promotion onto timeline 2.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import pino from 'pino';
import { decodeObject } from '../../src/archive/decode';
import { parseReceivedPartialKey, parseWalKey, RECEIVE_ROOT } from '../../src/archive/layout';
import { META } from '../../src/archive/objectMeta';
import { loadConfig } from '../../src/config';
import { makeDeps, type Deps } from '../../src/deps';
import { DEFAULT_SEGMENT_SIZE, parseLsn, segmentName, type Lsn } from '../../src/postgres/walName';
import { Cluster, chownToPg, trackClusters } from '../helpers/pg';
import { startFaultProxy, type FaultProxy } from '../helpers/faultProxy';
import { baseEnv, runWalts, WALTS_BIN } from '../helpers/run';
import { s3rverEnv } from '../helpers/s3server';
import { initArchive, startStore, type TestStore } from '../helpers/stores';
import { storeKeysUnder } from '../helpers/storeKeys';

const reg = trackClusters();
const PASSWORD = 'rcv:pass\\word';
const SEG = BigInt(DEFAULT_SEGMENT_SIZE);
const children: ChildProcess[] = [];
let passFile: string;

jest.setTimeout(600_000);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `f` holds; the timeout is a safety net against a hung test, not a claim about speed. */
async function waitFor(what: string, f: () => Promise<boolean> | boolean, timeoutMs = 180_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await f())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

interface Receiver {
  child: ChildProcess;
  lines: Array<Record<string, unknown>>;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startReceiver(args: string[], env: Record<string, string>): Receiver {
  const child = spawn(WALTS_BIN, ['wal-receive', ...args], { env: { ...baseEnv(), AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(child);
  const lines: Array<Record<string, unknown>> = [];
  let text = '';
  let partial = '';
  child.stderr!.on('data', (b: Buffer) => {
    text += b.toString();
    partial += b.toString();
    const parts = partial.split('\n');
    partial = parts.pop()!;
    for (const l of parts) {
      try {
        lines.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        lines.push({ msg: l });
      }
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, lines, stderr: () => text, exited };
}

function logged(r: Receiver, msg: RegExp): boolean {
  return r.lines.some((l) => msg.test(String(l.msg)));
}

/** A cluster reachable over TCP by role walrecv (REPLICATION, SCRAM password in the .pgpass file). */
async function replicationCluster(name: string, conf: Record<string, string> = {}): Promise<Cluster> {
  const pg = await reg.createCluster({ name, conf: { wal_keep_size: '1GB', ...conf } });
  const hba = path.join(pg.dataDir, 'pg_hba.conf');
  fs.writeFileSync(hba, 'local all all trust\nlocal replication all trust\nhost replication walrecv 127.0.0.1/32 scram-sha-256\n');
  await chownToPg(hba);
  await pg.start();
  await pg.psql(`create role walrecv login replication password '${PASSWORD.replace(/'/g, "''")}'`);
  addPgpass(pg.port);
  return pg;
}

function addPgpass(port: number): void {
  fs.appendFileSync(passFile, `127.0.0.1:${port}:replication:walrecv:${PASSWORD.replace(/([:\\])/g, '\\$1')}\n`, { mode: 0o600 });
}

function pgEnv(pg: Cluster): Record<string, string> {
  return { PGHOST: '127.0.0.1', PGPORT: String(pg.port), PGUSER: 'walrecv', PGPASSFILE: passFile, PGSSLMODE: 'disable' };
}

function depsFor(env: Record<string, string>): Deps {
  return makeDeps(loadConfig({ env, readFile: () => ({ text: '', mode: 0o600 }) }), pino({ level: 'silent' }));
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

interface StoreView {
  /** Complete segments in wal/ by name → key. */
  segments: Map<string, string>;
  /** .partial objects in receive/<slot>/ by segment → plain size. */
  partials: Map<string, { key: string; size: number }>;
}

async function view(deps: Deps): Promise<StoreView> {
  const segments = new Map<string, string>();
  const partials = new Map<string, { key: string; size: number }>();
  for await (const info of deps.storage.list('walts_v1/wal/')) {
    const w = parseWalKey(info.key);
    if (w?.name.kind === 'segment') segments.set(w.name.name, info.key);
  }
  for await (const info of deps.storage.list(`${RECEIVE_ROOT}/`)) {
    const p = parseReceivedPartialKey(info.key);
    if (!p) continue;
    const head = await deps.storage.head(info.key);
    partials.set(p.segment, { key: info.key, size: Number(head?.metadata[META.size]) });
  }
  return { segments, partials };
}

/** How far the store holds the WAL of `timeline` contiguously from segment `from`. */
function coverage(v: StoreView, timeline: number, from: bigint): Lsn {
  let seg = from;
  for (;;) {
    const name = segmentName({ timeline, segNo: Number(seg) });
    if (v.segments.has(name)) {
      seg++;
      continue;
    }
    const p = v.partials.get(name);
    return seg * SEG + BigInt(p?.size ?? 0);
  }
}

async function slotState(pg: Cluster, slot: string): Promise<{ restart: Lsn; active: boolean }> {
  const [lsn, active] = (await pg.psql(`select restart_lsn, active from pg_replication_slots where slot_name = '${slot}'`)).split('|');
  return { restart: parseLsn(lsn!), active: active === 't' };
}

/** The slot never passes what the store holds: restart_lsn read first, the store after (it only grows). */
async function expectSlotWithinStore(pg: Cluster, deps: Deps, slot: string, timeline: number, from: bigint): Promise<Lsn> {
  const { restart } = await slotState(pg, slot);
  const holds = coverage(await view(deps), timeline, from);
  expect(restart).toBeLessThanOrEqual(holds);
  return restart;
}

/** Every archived segment from `from` to `to` (exclusive) is pg_wal's file, byte for byte. */
async function expectSegmentsEqualPgWal(pg: Cluster, deps: Deps, timeline: number, from: bigint, to: bigint): Promise<void> {
  const v = await view(deps);
  for (let seg = from; seg < to; seg++) {
    const name = segmentName({ timeline, segNo: Number(seg) });
    const key = v.segments.get(name);
    expect({ name, archived: key !== undefined }).toEqual({ name, archived: true });
    const ours = await decoded(deps, key!);
    const theirs = fs.readFileSync(path.join(pg.dataDir, 'pg_wal', name));
    expect({ name, equal: ours.equals(theirs) }).toEqual({ name, equal: true });
  }
}

async function currentSegment(pg: Cluster): Promise<bigint> {
  return parseLsn(await pg.psql('select pg_current_wal_lsn()')) / SEG;
}

beforeAll(async () => {
  passFile = path.join(await reg.tempDir('pgpass'), 'pgpass');
  fs.writeFileSync(passFile, '', { mode: 0o600 });
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await reg.cleanupAll();
});

describe('walts wal-receive against PostgreSQL 15', () => {
  test('directory store: byte-for-byte segments, a growing .partial, SIGKILL and restart without a gap, a second receiver refused, SIGTERM', async () => {
    const store = await startStore('file', reg, 'receive');
    const pg = await replicationCluster('recv_primary');
    const env = { ...store.env, ...pgEnv(pg), WALTS_LOG_LEVEL: 'debug' };
    const deps = depsFor(store.env);
    await pg.psql('create table t (id int, pad text)');

    let rcv = startReceiver(['--slot', 'walts', '--create-slot', '--flush-interval', '0.2'], env);
    await waitFor('streaming', () => logged(rcv, /^wal-receive: streaming$/) || rcv.child.exitCode !== null);
    expect(rcv.child.exitCode).toBeNull();
    const first = (await slotState(pg, 'walts')).restart / SEG;

    // The segment in progress appears as .partial and grows; the slot follows it, never past it.
    await pg.psql("insert into t select g, repeat('x', 100) from generate_series(1, 2000) g");
    const inProgress = segmentName({ timeline: 1, segNo: Number(await currentSegment(pg)) });
    await waitFor('.partial', async () => (await view(deps)).partials.has(inProgress));
    const size1 = (await view(deps)).partials.get(inProgress)!.size;
    await expectSlotWithinStore(pg, deps, 'walts', 1, first);
    await pg.psql("insert into t select g, repeat('y', 100) from generate_series(1, 2000) g");
    if ((await currentSegment(pg)) === BigInt(parseInt(inProgress.slice(16), 16))) {
      await waitFor('.partial grows', async () => ((await view(deps)).partials.get(inProgress)?.size ?? 0) > size1);
    }
    await expectSlotWithinStore(pg, deps, 'walts', 1, first);

    // Several segments: each archived equal to pg_wal's, their .partial objects gone.
    await pg.pgbench(['-i', '-s', '3', '-q', 'postgres']);
    const end1 = parseLsn(await pg.psql('select pg_switch_wal()')) / SEG + 1n;
    await waitFor('segments archived', async () => coverage(await view(deps), 1, first) >= end1 * SEG);
    await expectSegmentsEqualPgWal(pg, deps, 1, first, end1);
    const v1 = await view(deps);
    for (let s = first; s < end1; s++) expect(v1.partials.has(segmentName({ timeline: 1, segNo: Number(s) }))).toBe(false);
    await waitFor('slot at the archived end', async () => (await slotState(pg, 'walts')).restart >= end1 * SEG - SEG);
    await expectSlotWithinStore(pg, deps, 'walts', 1, first);

    // A second receiver on the slot: refused, exit 2, one clear line.
    const second = startReceiver(['--slot', 'walts'], env);
    const out2 = await second.exited;
    expect(out2.code).toBe(2);
    expect(second.stderr()).toMatch(/replication slot \\?"walts\\?" is in use by another connection \(server process \d+\): refusing to be a second receiver/);

    // SIGKILL mid-segment, WAL written while it is down, restart: no gap, no conflict.
    await pg.psql("insert into t select g, repeat('z', 500) from generate_series(1, 5000) g");
    await waitFor('.partial of the segment in progress', async () => (await view(deps)).partials.size > 0);
    rcv.child.kill('SIGKILL');
    await rcv.exited;
    await expectSlotWithinStore(pg, deps, 'walts', 1, first);
    await pg.pgbench(['-c', '2', '-t', '500', 'postgres']);
    await expectSlotWithinStore(pg, deps, 'walts', 1, first);
    // The server notices the dead connection (its socket closed) and releases the slot.
    await waitFor('slot released', async () => !(await slotState(pg, 'walts')).active);
    rcv = startReceiver(['--slot', 'walts', '--flush-interval', '0.2'], env);
    await waitFor('streaming again', () => logged(rcv, /^wal-receive: streaming$/) || rcv.child.exitCode !== null);
    expect(rcv.child.exitCode).toBeNull();
    await expectSlotWithinStore(pg, deps, 'walts', 1, first);
    const end2 = parseLsn(await pg.psql('select pg_switch_wal()')) / SEG + 1n;
    await waitFor('caught up', async () => coverage(await view(deps), 1, first) >= end2 * SEG);
    await expectSegmentsEqualPgWal(pg, deps, 1, first, end2);
    await expectSlotWithinStore(pg, deps, 'walts', 1, first);
    expect(rcv.lines.filter((l) => l.level === 'error')).toEqual([]);

    // A terminated walsender: the receiver reconnects by itself and goes on from the slot.
    await pg.psql("select pg_terminate_backend(active_pid) from pg_replication_slots where slot_name = 'walts'");
    await waitFor('reconnected', () => logged(rcv, /^wal-receive: streaming interrupted; reconnecting$/) && rcv.lines.filter((l) => l.msg === 'wal-receive: streaming').length >= 2);
    expect(rcv.child.exitCode).toBeNull();

    // SIGTERM: the WAL received is flushed as .partial and reported, then it dies by the signal.
    await pg.psql("insert into t select g, repeat('w', 100) from generate_series(1, 1000) g");
    const target = parseLsn(await pg.psql('select pg_current_wal_lsn()'));
    await waitFor('received', async () => rcv.lines.some((l) => l.msg === 'wal-receive: partial segment flushed' && parseLsn(String(l.lsn)) >= target));
    rcv.child.kill('SIGTERM');
    expect(await rcv.exited).toEqual({ code: null, signal: 'SIGTERM' });
    expect(logged(rcv, /^wal-receive: stopping$/)).toBe(true);
    const restart = await expectSlotWithinStore(pg, deps, 'walts', 1, first);
    expect(restart).toBeGreaterThanOrEqual(target);
    await deps.storage.close();
  });

  test('s3 store answering 503, then resetting connections: the slot does not move while the store fails, the receiver catches up afterwards', async () => {
    const store: TestStore = await startStore('s3', reg, 'faults');
    const proxy: FaultProxy = await startFaultProxy({ host: '127.0.0.1', port: store.s3!.port });
    try {
      const pg = await replicationCluster('recv_faults');
      const storeEnv = s3rverEnv({ bucket: store.s3!.bucket, endpoint: proxy.endpoint }, 'faults');
      const env = { ...storeEnv, ...pgEnv(pg), WALTS_RETRY_DEADLINE: '3600', WALTS_IO_TIMEOUT: '5' };
      const deps = depsFor(s3rverEnv(store.s3!, 'faults'));
      const rcv = startReceiver(['--slot', 'walts', '--create-slot', '--flush-interval', '0.2'], env);
      await waitFor('streaming', () => logged(rcv, /^wal-receive: streaming$/) || rcv.child.exitCode !== null);
      const first = (await slotState(pg, 'walts')).restart / SEG;
      const end1 = parseLsn(await pg.psql('select pg_switch_wal()')) / SEG + 1n;
      await waitFor('first segment', async () => coverage(await view(deps), 1, first) >= end1 * SEG);
      await waitFor('slot follows', async () => (await slotState(pg, 'walts')).restart >= end1 * SEG);

      // The store fails every request: WAL is written and switched, the receiver keeps trying.
      proxy.inject({ kind: 'status', status: 503, times: 1_000_000 });
      const seen = proxy.requests.length;
      await pg.pgbench(['-i', '-s', '2', '-q', 'postgres']);
      // Once a request has failed, the receiver is held in that store operation until the store answers.
      await waitFor('a refused request', () => proxy.requests.length > seen);
      await sleep(500); // a status update for a flush acknowledged just before may still be on its way
      const before = (await slotState(pg, 'walts')).restart;
      const end2 = parseLsn(await pg.psql('select pg_switch_wal()')) / SEG + 1n;
      await waitFor('several refused attempts', () => proxy.requests.filter((r) => r.method === 'PUT').length > 0 && proxy.requests.length - seen >= 6);
      expect((await slotState(pg, 'walts')).restart).toBe(before);
      expect(rcv.child.exitCode).toBeNull();
      expect(await expectSlotWithinStore(pg, deps, 'walts', 1, first)).toBe(before);

      // Then connections cut before any answer (resets), the same.
      proxy.clear();
      proxy.inject({ kind: 'reset', times: 1_000_000 });
      const seenResets = proxy.requests.length;
      await waitFor('several cut attempts', () => proxy.requests.length - seenResets >= 4);
      expect((await slotState(pg, 'walts')).restart).toBe(before);
      expect(rcv.child.exitCode).toBeNull();

      // The store is back: everything is archived, the slot follows.
      proxy.clear();
      await waitFor('caught up', async () => coverage(await view(deps), 1, first) >= end2 * SEG);
      await expectSegmentsEqualPgWal(pg, deps, 1, first, end2);
      await waitFor('slot caught up', async () => (await slotState(pg, 'walts')).restart >= end2 * SEG - SEG);
      await expectSlotWithinStore(pg, deps, 'walts', 1, first);
      rcv.child.kill('SIGTERM');
      expect((await rcv.exited).signal).toBe('SIGTERM');
      await deps.storage.close();
    } finally {
      await proxy.stop();
      await store.stop();
    }
  });

  test('--synchronous with synchronous_standby_names: a commit returns only once the store holds it', async () => {
    const store = await startStore('file', reg, 'sync');
    const pg = await replicationCluster('recv_sync');
    const env = { ...store.env, ...pgEnv(pg) };
    const deps = depsFor(store.env);
    // The flush interval is long: only the synchronous path can make the commit durable in time.
    const rcv = startReceiver(['--slot', 'walts', '--create-slot', '--synchronous', '--flush-interval', '1h'], env);
    await waitFor('streaming', () => logged(rcv, /^wal-receive: streaming$/) || rcv.child.exitCode !== null);
    await waitFor('listed as a standby', async () => (await pg.psql("select count(*) from pg_stat_replication where application_name = 'walts_receive'")) === '1');
    pg.setConf({ synchronous_standby_names: 'walts_receive' });
    await pg.reload();
    await waitFor('synchronous', async () => (await pg.psql("select sync_state from pg_stat_replication where application_name = 'walts_receive'")) === 'sync');
    const marker = `rpo-marker-${process.pid}-${Date.now()}`;
    await pg.psql(`create table s (v text); insert into s values ('${marker}')`);
    // The commit has returned: its WAL is in the store now, not after some interval.
    const v = await view(deps);
    const objects = [...v.segments.values(), ...[...v.partials.values()].map((p) => p.key)];
    let found = false;
    for (const key of objects) if ((await decoded(deps, key)).includes(Buffer.from(marker))) found = true;
    expect(found).toBe(true);

    // status and metrics show the slot with its receiver connected (synchronous), then not connected.
    const statusEnv = { ...store.env, ...pg.pgEnv() };
    const slotOf = async () => {
      const r = await runWalts(['status', '--json'], statusEnv, { timeoutMs: 120_000 });
      expect(r.code).toBe(0);
      return (JSON.parse(r.stdout) as { postgres: { replication_slots: Array<Record<string, unknown>> } }).postgres.replication_slots.find((x) => x.slot === 'walts');
    };
    expect(await slotOf()).toMatchObject({ active: true, receiver: { application_name: 'walts_receive', state: 'streaming', sync_state: 'sync', flush_lag_bytes: expect.any(Number) }, retained_bytes: expect.any(Number) });
    const text = await runWalts(['status'], statusEnv, { timeoutMs: 120_000 });
    expect(text.stdout).toMatch(/slot walts:\s+connected \(walts_receive from 127\.0\.0\.1, streaming, sync\), flushed [0-9A-F]+\/[0-9A-F]+, /);
    const prom = path.join(await reg.tempDir('metrics'), 'walts.prom');
    expect((await runWalts(['metrics', '--textfile', prom], statusEnv, { timeoutMs: 120_000 })).code).toBe(0);
    const metrics = fs.readFileSync(prom, 'utf8');
    expect(metrics).toMatch(/^walts_replication_slot_active\{database="[^"]*",slot="walts"\} 1$/m);
    expect(metrics).toMatch(/^walts_replication_slot_flush_lag_bytes\{database="[^"]*",slot="walts"\} \d+$/m);
    pg.setConf({ synchronous_standby_names: '' });
    await pg.reload();
    rcv.child.kill('SIGTERM');
    expect((await rcv.exited).signal).toBe('SIGTERM');
    await waitFor('slot released', async () => !(await slotState(pg, 'walts')).active);
    const idle = await slotOf();
    expect(idle).toMatchObject({ active: false, retained_bytes: expect.any(Number) });
    expect(idle).not.toHaveProperty('receiver');
    expect((await runWalts(['status'], statusEnv, { timeoutMs: 120_000 })).stdout).toMatch(/slot walts:\s+NOT CONNECTED, retains /);
    await deps.storage.close();
  });

  test('a primary killed right after a commit: the receiver writes what it received, the commit is in the store', async () => {
    const store = await startStore('file', reg, 'rpo');
    const pg = await replicationCluster('recv_rpo');
    const deps = depsFor(store.env);
    // A long flush interval: only the end of the stream can make the last WAL reach the store.
    const rcv = startReceiver(['--slot', 'walts', '--create-slot', '--flush-interval', '1h'], { ...store.env, ...pgEnv(pg) });
    await waitFor('streaming', () => logged(rcv, /^wal-receive: streaming$/) || rcv.child.exitCode !== null);
    const marker = `rpo-killed-${process.pid}-${Date.now()}`;
    await pg.psql(`create table k (v text); insert into k values ('${marker}')`);
    const commitEnd = parseLsn(await pg.psql('select pg_current_wal_flush_lsn()'));
    // The walsender has sent it (normally at once); then the primary dies without a shutdown.
    await waitFor('sent', async () => {
      const sent = await pg.psql("select coalesce(sent_lsn::text, '0/0') from pg_stat_replication where application_name = 'walts_receive'");
      return sent !== '' && parseLsn(sent) >= commitEnd;
    });
    process.kill(Number(fs.readFileSync(path.join(pg.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]), 'SIGKILL');
    await waitFor('salvaged', () => logged(rcv, /^wal-receive: streaming ended: the WAL received is in the store$/));
    const v = await view(deps);
    let found = false;
    for (const p of v.partials.values()) if ((await decoded(deps, p.key)).includes(Buffer.from(marker))) found = true;
    expect(found).toBe(true);
    rcv.child.kill('SIGTERM');
    expect((await rcv.exited).signal).toBe('SIGTERM');
    await pg.stop('immediate').catch(() => undefined);
    await deps.storage.close();
  });

  test('refusals: bad arguments (exit 2, nothing contacted), a store of another cluster (exit 3, nothing written)', async () => {
    const store = await startStore('file', reg, 'foreign', { init: false });
    for (const args of [[], ['--slot', 'Bad-Name'], ['--slot', 'ok', '--flush-interval', 'soon'], ['--slot', 'ok', '--status-interval', '0']]) {
      const r = await runWalts(['wal-receive', ...args], store.env, { timeoutMs: 60_000 });
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
    }
    const other = await reg.createCluster({ name: 'recv_other' });
    await initArchive(store.env, ['--pgdata', other.dataDir]);
    const before = await storeKeysUnder(store, 'walts_v1');
    const pg = await replicationCluster('recv_foreign');
    const r = await runWalts(['wal-receive', '--slot', 'walts', '--create-slot'], { ...store.env, ...pgEnv(pg) }, { timeoutMs: 120_000 });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/but this store belongs to system \d+; refusing to stream into it/);
    expect(await storeKeysUnder(store, 'walts_v1')).toEqual(before);
    expect(await pg.psql('select count(*) from pg_replication_slots')).toBe('0'); // refused before --create-slot acted
  });

  test("a standby's slot followed across its promotion: timeline 2's history file archived, streaming goes on on timeline 2", async () => {
    const store = await startStore('file', reg, 'promote');
    const primary = await replicationCluster('recv_tl_primary');
    const standby = await reg.basebackup(primary, { name: 'recv_tl_standby' });
    standby.setConf({ primary_conninfo: `host=${primary.socketDir} port=${primary.port} user=postgres`, hot_standby: 'on', wal_keep_size: '1GB' });
    fs.writeFileSync(path.join(standby.dataDir, 'standby.signal'), '');
    await chownToPg(path.join(standby.dataDir, 'standby.signal'));
    await standby.start();
    addPgpass(standby.port);
    await primary.psql('create table t (id int)');
    await primary.psql('insert into t select generate_series(1, 1000)');
    await waitFor('standby replays', async () => (await standby.psql('select count(*) from t').catch(() => '')) === '1000');

    const env = { ...store.env, ...pgEnv(standby), WALTS_LOG_LEVEL: 'debug' };
    const deps = depsFor(store.env);
    const rcv = startReceiver(['--slot', 'cascade', '--create-slot', '--flush-interval', '0.2'], env);
    await waitFor('streaming', () => logged(rcv, /^wal-receive: streaming$/) || rcv.child.exitCode !== null);
    expect(rcv.child.exitCode).toBeNull();
    const first = (await slotState(standby, 'cascade')).restart / SEG;
    await primary.psql('insert into t select generate_series(1, 1000)');
    const end1 = parseLsn(await primary.psql('select pg_switch_wal()')) / SEG + 1n;
    await waitFor('timeline 1 archived from the standby', async () => coverage(await view(deps), 1, first) >= end1 * SEG);

    await primary.stop('fast');
    await standby.runBin('pg_ctl', ['-D', standby.dataDir, '-w', 'promote']);
    await standby.waitForRecoveryEnd();
    await standby.psql('insert into t select generate_series(1, 1000)');
    const end2 = parseLsn(await standby.psql('select pg_switch_wal()')) / SEG + 1n;
    await waitFor('timeline 2 archived', async () => coverage(await view(deps), 2, end2 - 1n) >= end2 * SEG);
    expect(logged(rcv, /^wal-receive: timeline ended; following the next one$/)).toBe(true);
    const history = await decoded(deps, 'walts_v1/wal/history/00000002.history.lz4');
    expect(history.equals(fs.readFileSync(path.join(standby.dataDir, 'pg_wal', '00000002.history')))).toBe(true);
    await expectSegmentsEqualPgWal(standby, deps, 2, end2 - 1n, end2);
    await expectSlotWithinStore(standby, deps, 'cascade', 2, end2 - 1n);
    rcv.child.kill('SIGTERM');
    expect((await rcv.exited).signal).toBe('SIGTERM');
    expect(rcv.lines.filter((l) => l.level === 'error')).toEqual([]);
    await deps.storage.close();
  });
});
