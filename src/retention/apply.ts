/**
 * The I/O half of retention: read what the store holds into a `RetentionInput`, and carry out a
 * plan in an order that keeps the store consistent if it is interrupted at any point:
 *
 *   per backup: deleting.json (tombstone) → sentinel → volumes and manifest → started.json → tombstone
 *   then WAL, then a receiver's partial segments before the cutoff, then (for `everything`) the remaining keys; deletes go in batches of 1000.
 *
 * The sentinel goes first, so no listed backup ever lacks a part; the tombstone makes the next run
 * finish a half-deleted backup instead of taking it for a backup in progress.
 */
import { mapLimit, readSentinel } from '../archive/catalog';
import { ARCHIVE_KEY, backupKeys, parseBackupKey, parseReceivedPartialKey, parseWalKey, ROOT } from '../archive/layout';
import type { BackupSentinel } from '../backup/sentinel';
import { compareByStart } from '../backup/sentinel';
import type { Storage } from '../storage/storage';
import { readAll } from '../util/streams';
import type { ReceivedObject, RetentionInput, RetentionPlan, UnfinishedBackup, WalObject } from './policy';

const BATCH = 1000;

export async function readRetentionInput(storage: Storage, options: { nowMs: number; leftoverAgeMs: number; signal?: AbortSignal }): Promise<RetentionInput> {
  const folders = new Map<string, { keys: string[]; parts: Set<string>; lastModifiedMs: number }>();
  const wal: WalObject[] = [];
  const otherKeys: string[] = [];
  const received: ReceivedObject[] = [];
  const sizes = new Map<string, number>();
  for await (const o of storage.list(`${ROOT}/`, { signal: options.signal })) {
    sizes.set(o.key, o.size);
    const b = parseBackupKey(o.key);
    if (b) {
      let f = folders.get(b.name);
      if (!f) folders.set(b.name, (f = { keys: [], parts: new Set(), lastModifiedMs: 0 }));
      f.keys.push(o.key);
      f.parts.add(b.part);
      f.lastModifiedMs = Math.max(f.lastModifiedMs, o.lastModified?.getTime() ?? options.nowMs);
      continue;
    }
    const r = parseReceivedPartialKey(o.key);
    if (r) {
      received.push({ key: o.key, slot: r.slot, segment: r.segment, codecs: r.codecs, storedSize: o.size, lastModifiedMs: o.lastModified?.getTime() });
      continue;
    }
    const w = parseWalKey(o.key);
    if (w) wal.push({ key: o.key, name: w.name, size: o.size, lastModifiedMs: o.lastModified?.getTime() });
    // The archive record is what makes the prefix an archive: even `delete everything` keeps it.
    else if (o.key !== ARCHIVE_KEY) otherKeys.push(o.key);
  }

  const complete = [...folders].filter(([, f]) => f.parts.has('sentinel') && !f.parts.has('deleting')).map(([name]) => name);
  const backups: BackupSentinel[] = (await mapLimit(complete, 8, (name) => readSentinel(storage, name, options.signal))).sort(compareByStart);
  const unfinished: UnfinishedBackup[] = await mapLimit(
    [...folders].filter(([name]) => !complete.includes(name)),
    8,
    async ([name, f]) => ({
      name,
      keys: f.keys,
      lastModifiedMs: f.lastModifiedMs,
      deleting: f.parts.has('deleting'),
      startWalFile: f.parts.has('started') ? await startWalFile(storage, name, options.signal) : undefined,
    }),
  );
  return {
    backups,
    backupKeys: new Map(complete.map((name) => [name, folders.get(name)?.keys ?? []])),
    unfinished,
    wal,
    otherKeys,
    received,
    sizes,
    nowMs: options.nowMs,
    leftoverAgeMs: options.leftoverAgeMs,
  };
}

async function startWalFile(storage: Storage, name: string, signal?: AbortSignal): Promise<string | undefined> {
  try {
    const obj = await storage.get(backupKeys.started(name), { signal });
    const marker = JSON.parse((await readAll(obj.body, 1 << 20)).toString('utf8')) as { start_wal_file?: unknown };
    return typeof marker.start_wal_file === 'string' && /^[0-9A-F]{24}$/.test(marker.start_wal_file) ? marker.start_wal_file : undefined;
  } catch {
    return undefined; // unreadable marker: the backup then protects all WAL (see walAnchors)
  }
}

export interface ApplyProgress {
  (event: { what: 'backup' | 'wal' | 'other'; name?: string; deleted: number }): void;
}

/** Deletes what the plan says, in the crash-safe order described above. Returns keys deleted. */
export async function applyRetention(storage: Storage, plan: RetentionPlan, options: { signal?: AbortSignal; onProgress?: ApplyProgress } = {}): Promise<number> {
  let deleted = 0;
  for (const b of plan.backups.filter((d) => d.action === 'delete')) {
    options.signal?.throwIfAborted();
    const tombstone = backupKeys.deleting(b.name);
    if (!b.keys.includes(tombstone)) {
      await storage.put(tombstone, Buffer.from(JSON.stringify({ name: b.name, reason: b.reason, at: new Date().toISOString() }) + '\n'), { signal: options.signal });
    }
    const sentinel = backupKeys.sentinel(b.name);
    const started = backupKeys.started(b.name);
    if (b.keys.includes(sentinel)) await storage.delete([sentinel], { signal: options.signal });
    const parts = b.keys.filter((k) => k !== sentinel && k !== started && k !== tombstone);
    await deleteBatches(storage, parts, options.signal);
    // Marker before tombstone, in two calls: a folder never ends up with a marker and no tombstone,
    // which would look like a backup in progress and hold WAL back until the leftover age.
    await storage.delete([started], { signal: options.signal });
    await storage.delete([tombstone], { signal: options.signal });
    deleted += b.keys.length;
    options.onProgress?.({ what: 'backup', name: b.name, deleted });
  }
  for (let i = 0; i < plan.walKeys.length; i += BATCH) {
    const batch = plan.walKeys.slice(i, i + BATCH);
    await storage.delete(batch, { signal: options.signal });
    deleted += batch.length;
    options.onProgress?.({ what: 'wal', deleted });
  }
  if (plan.receivedKeys.length > 0) {
    await deleteBatches(storage, plan.receivedKeys, options.signal);
    deleted += plan.receivedKeys.length;
    options.onProgress?.({ what: 'wal', deleted });
  }
  if (plan.otherKeys.length > 0) {
    await deleteBatches(storage, plan.otherKeys, options.signal);
    deleted += plan.otherKeys.length;
    options.onProgress?.({ what: 'other', deleted });
  }
  return deleted;
}

async function deleteBatches(storage: Storage, keys: readonly string[], signal?: AbortSignal): Promise<void> {
  for (let i = 0; i < keys.length; i += BATCH) await storage.delete(keys.slice(i, i + BATCH), { signal });
}
