/**
 * Cost of receiving WAL over the replication protocol (docs/performance.md, "Streaming replication
 * client"): walts' client (src/postgres/replication, from dist/) against pg_receivewal, each
 * receiving the same WAL from one slot of a throw-away PostgreSQL 15 cluster over TCP and writing it
 * into 16 MiB segment files (no fsync on either side), rounds interleaved. Checks that both wrote the
 * same bytes. Prints wall time, CPU (user+sys), minor page faults and max RSS of each run (GNU time).
 *
 *   npm run build && node -r ./scripts/register-ts.js scripts/bench-walreceive.ts [--scale 10] [--rounds 3]
 */
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chownToPg, pgBin, trackClusters } from '../test/helpers/pg';
import { run } from '../test/helpers/run';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? (args[i + 1] as string) : dflt;
};
const SCALE = opt('scale', '10');
const ROUNDS = Number(opt('rounds', '3'));
/** A directory for CPU profiles of the walts receiver (node --cpu-prof), or none. */
const CPU_PROF = opt('cpu-prof', '');
/** Only these receivers (comma-separated), e.g. `walts` while profiling. */
const ONLY = opt('only', 'walts,pg_receivewal').split(',');
const SEG = 16n * 1024n * 1024n;
const DIST = resolve(__dirname, '../dist/postgres/replication/connection.js');

/** The walts receiver: stream from `start` to `end`, writing each XLogData at its segment offset. */
const CHILD = `
const fs = require('fs'), path = require('path');
const { ReplicationConnection } = require(${JSON.stringify(DIST)});
const [dir, slot, startText, endText] = process.argv.slice(2);
const SEG = 16n * 1024n * 1024n, start = BigInt(startText), end = BigInt(endText);
(async () => {
  const conn = await ReplicationConnection.open();
  const stream = await conn.startPhysical({ slot, start, timeline: 1, statusIntervalMs: 10000 });
  const fds = new Map();
  for await (const ev of stream) {
    if (ev.type !== 'xlog-data') continue;
    let lsn = ev.start, rest = ev.data;
    while (rest.length > 0) {
      const seg = lsn / SEG, off = Number(lsn % SEG), n = Math.min(rest.length, Number(SEG) - off);
      let fd = fds.get(seg);
      if (fd === undefined) fds.set(seg, (fd = fs.openSync(path.join(dir, '00000001' + (seg / 256n).toString(16).toUpperCase().padStart(8, '0') + (seg % 256n).toString(16).toUpperCase().padStart(8, '0')), 'w')));
      fs.writeSync(fd, rest, 0, n, off);
      lsn += BigInt(n); rest = rest.subarray(n);
    }
    if (stream.received >= end) break;
  }
  for (const fd of fds.values()) fs.closeSync(fd);
  await conn.close();
})().catch((e) => { console.error(e.message); process.exit(1); });
`;

interface Sample {
  wall: number;
  cpu: number;
  faults: number;
  rssMb: number;
}

function timed(r: { code: number | null; stderr: string }, what: string): Sample {
  if (r.code !== 0) throw new Error(`${what} failed: ${r.stderr}`);
  const m = /TIME (\S+) (\S+)\+(\S+) faults (\d+) maxrss (\d+)/.exec(r.stderr);
  if (!m) throw new Error(`no GNU time output from ${what}: ${r.stderr}`);
  return { wall: Number(m[1]), cpu: Number(m[2]) + Number(m[3]), faults: Number(m[4]), rssMb: Number(m[5]) / 1024 };
}

const segFile = (segNo: bigint): string => `00000001${(segNo / 256n).toString(16).toUpperCase().padStart(8, '0')}${(segNo % 256n).toString(16).toUpperCase().padStart(8, '0')}`;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const reg = trackClusters();
  try {
    const pg = await reg.createCluster({ name: 'bench', conf: { max_wal_size: '2GB', wal_sender_timeout: '0' } });
    const hba = join(pg.dataDir, 'pg_hba.conf');
    writeFileSync(hba, 'local all all trust\nhost replication all 127.0.0.1/32 trust\n');
    await chownToPg(hba);
    await pg.start();
    await pg.psql(`select pg_create_physical_replication_slot('bench', true)`);
    const restart = BigInt(`0x${(await pg.psql(`select lpad(to_hex((restart_lsn - '0/0')::bigint), 16, '0') from pg_replication_slots`)).trim()}`);
    await pg.pgbench(['-i', '-s', SCALE, '-q', 'postgres']);
    const switched = BigInt(`0x${(await pg.psql(`select lpad(to_hex((pg_switch_wal() - '0/0')::bigint), 16, '0')`)).trim()}`);
    const start = (restart / SEG) * SEG;
    const end = ((switched - 1n) / SEG + 1n) * SEG;
    const mib = Number(end - start) / 2 ** 20;
    const base = await reg.tempDir('out');
    const child = join(base, 'receive.js');
    writeFileSync(child, CHILD);
    const env = { PGHOST: '127.0.0.1', PGPORT: String(pg.port), PGUSER: 'postgres', PGSSLMODE: 'disable', PATH: process.env.PATH ?? '/usr/bin:/bin' };
    const endText = `${(end >> 32n).toString(16).toUpperCase()}/${(end & 0xffffffffn).toString(16).toUpperCase()}`;
    const samples: Record<string, Sample[]> = { walts: [], pg_receivewal: [] };
    const fmt = '--format=TIME %e %U+%S faults %R maxrss %M';
    for (let round = 0; round < ROUNDS; round++) {
      for (const who of (['walts', 'pg_receivewal'] as const).filter((w) => ONLY.includes(w))) {
        const dir = join(base, `${who}-${round}`);
        mkdirSync(dir);
        // pg_receivewal starts where the files in its directory end: a zero-filled .partial of the
        // first segment makes it start there (without a slot: it would advance the slot, which
        // holds the WAL for every round; walts reports no flush position, so the slot stays).
        if (who === 'pg_receivewal') writeFileSync(join(dir, `${segFile(start / SEG)}.partial`), Buffer.alloc(Number(SEG)));
        const r =
          who === 'walts'
            ? await run('/usr/bin/time', [fmt, process.execPath, ...(CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${CPU_PROF}`] : []), child, dir, 'bench', String(start), String(end)], { env, timeoutMs: 600_000 })
            : await run('/usr/bin/time', [fmt, pgBin('pg_receivewal'), '-D', dir, '--no-sync', '-n', '-E', endText, '-w'], { env, timeoutMs: 600_000 });
        samples[who]!.push(timed(r, who));
      }
      // Same bytes: every whole segment of both receivers.
      if (ONLY.length === 2) for (const name of readdirSync(join(base, `pg_receivewal-${round}`)).filter((n) => /^[0-9A-F]{24}$/.test(n))) {
        const a = readFileSync(join(base, `walts-${round}`, name));
        const b = readFileSync(join(base, `pg_receivewal-${round}`, name));
        if (!a.equals(b)) throw new Error(`round ${round}: ${name} differs between walts and pg_receivewal`);
      }
      for (const who of ONLY) rmSync(join(base, `${who}-${round}`), { recursive: true });
    }
    console.log(`WAL received per run: ${mib} MiB (${Number(end - start) / Number(SEG)} segments), pgbench -i -s ${SCALE}; ${ROUNDS} rounds, medians`);
    console.log('receiver        wall s   cpu s   MiB/cpu-s   minor faults   max RSS MiB');
    for (const [who, xs] of Object.entries(samples).filter(([, xs]) => xs.length > 0)) {
      const cpu = median(xs.map((x) => x.cpu));
      console.log(
        `${who.padEnd(14)} ${median(xs.map((x) => x.wall)).toFixed(2).padStart(6)} ${cpu.toFixed(2).padStart(7)} ${(mib / Math.max(cpu, 0.01)).toFixed(0).padStart(11)} ${String(median(xs.map((x) => x.faults))).padStart(14)} ${median(xs.map((x) => x.rssMb)).toFixed(0).padStart(13)}`,
      );
    }
    console.log('all runs:', JSON.stringify(samples));
  } finally {
    await reg.cleanupAll();
  }
}

void main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
