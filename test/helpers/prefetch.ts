/**
 * Shared by the prefetch integration tests (prefetch.test.ts, prefetchAsk.test.ts): segment-name
 * arithmetic, polling without timing assertions, and whether a prefetcher process is alive.
 */
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { nextSegment, parseSegmentName, segmentName } from '../../src/postgres/walName';

/** The WAL segment name `n` segments after `name`. */
export function nextSegmentName(name: string, n = 1): string {
  let id = parseSegmentName(name);
  for (let i = 0; i < n; i++) id = nextSegment(id);
  return segmentName(id);
}

/** Polls (generously: the machine is loaded) until `f` holds; not a timing assertion. */
export async function waitUntil(what: string, f: () => boolean, timeoutMs = 180_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!f()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Whether pid runs (not a zombie: nothing reaps orphans in this container). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s[s.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false;
  }
}

/** A directory standing in for PGDATA (restore_command's cwd): pg_wal, and the source's pg_control,
 * from which wal-fetch reads the segment size to start the prefetcher early. */
export function scratchPgdata(dir: string, sourceDataDir: string): { dir: string; dest: string; spool: string } {
  mkdirSync(join(dir, 'pg_wal'), { recursive: true });
  mkdirSync(join(dir, 'global'));
  copyFileSync(join(sourceDataDir, 'global', 'pg_control'), join(dir, 'global', 'pg_control'));
  return { dir, dest: join(dir, 'pg_wal', 'RECOVERYXLOG'), spool: join(dir, 'pg_wal', 'walts_spool', 'fetch') };
}
