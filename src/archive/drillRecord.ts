/**
 * The record a restore drill (`walts restore-test`) leaves in the store, and how `status` and
 * `metrics` read the latest ones back. Plain JSON, like the backup sentinel: monitoring hosts need no
 * private key to read it, and it holds positions and timings, no table data.
 *
 * A record is written once, under a new key (layout.ts `drillKey`), after the drill has finished,
 * passed or failed. Everything read back is checked field by field: the store may hold anything.
 */
import { DRILL_ROOT, drillKey, parseDrillKey } from './layout';
import type { Storage } from '../storage/storage';
import { readAll } from '../util/streams';

export const DRILL_FORMAT = 1;

export interface DrillCheck {
  /** Short identifier: `fetch`, `replay`, `consistent`, `query`, `sql`, `amcheck`, ... */
  readonly name: string;
  readonly ok: boolean;
  /** One line: what was seen, or why it failed. */
  readonly detail: string;
}

export interface DrillRecord {
  readonly format: typeof DRILL_FORMAT;
  /** The backup restored. */
  readonly backup: string;
  readonly ok: boolean;
  /** ISO 8601 UTC, walts' clock. */
  readonly started_at: string;
  readonly finished_at: string;
  readonly duration_seconds: number;
  /** What recovery was asked to reach: the end of the archive, or a time. */
  readonly target: { readonly kind: 'end' } | { readonly kind: 'time'; readonly time: string };
  /** Where replay ended (pg_last_wal_replay_lsn) and its timeline, when it got that far. */
  readonly reached_lsn: string | null;
  readonly reached_timeline: number | null;
  /** The last commit time replayed (pg_last_xact_replay_timestamp), when known. */
  readonly reached_time: string | null;
  readonly checks: readonly DrillCheck[];
  /** The first failure in one line; null when ok. */
  readonly error: string | null;
  readonly hostname: string;
  readonly walts_version: string;
}

/** Writes `record` under its own new key; never overwrites (create-if-absent). */
export async function writeDrillRecord(storage: Storage, record: DrillRecord, options: { signal?: AbortSignal } = {}): Promise<string> {
  const key = drillKey(Date.parse(record.started_at), record.backup);
  await storage.put(key, Buffer.from(`${JSON.stringify(record, null, 2)}\n`), { ifAbsent: true, signal: options.signal });
  return key;
}

export interface LatestDrills {
  /** The newest drill record, passed or failed. */
  readonly last?: DrillRecord;
  /** The newest drill that passed. */
  readonly lastSuccess?: DrillRecord;
  /** Keys under the drill folder named as drill records (read or not, valid or not). */
  readonly count: number;
  /** Keys that are not drill names, and records read that did not validate (reported, never trusted). */
  readonly invalid: readonly string[];
}

/**
 * Reads the newest drill and the newest successful drill. Keys are listed (time order), then read
 * from the newest back until a passed one is found; at most `maxReads` records are read.
 */
export async function latestDrills(storage: Storage, options: { signal?: AbortSignal; maxReads?: number } = {}): Promise<LatestDrills> {
  const keys: string[] = [];
  const invalid: string[] = [];
  for await (const o of storage.list(`${DRILL_ROOT}/`, { signal: options.signal })) (parseDrillKey(o.key) ? keys : invalid).push(o.key);
  let last: DrillRecord | undefined;
  let lastSuccess: DrillRecord | undefined;
  let reads = 0;
  for (let i = keys.length - 1; i >= 0 && !lastSuccess && reads < (options.maxReads ?? 50); i--) {
    const key = keys[i]!;
    const parsedKey = parseDrillKey(key)!;
    reads++;
    const object = await storage.get(key, { signal: options.signal });
    const record = parseDrillRecord(await readAll(object.body, 1 << 20), parsedKey.backup);
    if (!record) {
      invalid.push(key);
      continue;
    }
    last ??= record;
    if (record.ok) lastSuccess = record;
  }
  return { last, lastSuccess, count: keys.length, invalid };
}

/** Validates untrusted bytes as a drill record for `backup`; undefined when anything is off. */
export function parseDrillRecord(bytes: Buffer, backup: string): DrillRecord | undefined {
  let v: unknown;
  try {
    v = JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const r = v as Record<string, unknown>;
  const isTime = (x: unknown) => typeof x === 'string' && Number.isFinite(Date.parse(x));
  const target = r.target as Record<string, unknown> | undefined;
  const targetOk = typeof target === 'object' && target !== null && (target.kind === 'end' || (target.kind === 'time' && typeof target.time === 'string'));
  const checksOk = Array.isArray(r.checks) && r.checks.every((c) => typeof c === 'object' && c !== null && typeof (c as DrillCheck).name === 'string' && typeof (c as DrillCheck).ok === 'boolean' && typeof (c as DrillCheck).detail === 'string');
  const ok =
    r.format === DRILL_FORMAT &&
    r.backup === backup &&
    typeof r.ok === 'boolean' &&
    isTime(r.started_at) &&
    isTime(r.finished_at) &&
    typeof r.duration_seconds === 'number' &&
    Number.isFinite(r.duration_seconds) &&
    r.duration_seconds >= 0 &&
    targetOk &&
    (r.reached_lsn === null || (typeof r.reached_lsn === 'string' && /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/.test(r.reached_lsn))) &&
    (r.reached_timeline === null || (Number.isInteger(r.reached_timeline) && (r.reached_timeline as number) > 0)) &&
    (r.reached_time === null || isTime(r.reached_time)) &&
    checksOk &&
    (r.error === null || typeof r.error === 'string') &&
    typeof r.hostname === 'string' &&
    typeof r.walts_version === 'string' &&
    // A passed drill has no failed check and no error.
    (!r.ok || (r.error === null && (r.checks as DrillCheck[]).every((c) => c.ok)));
  return ok ? (v as DrillRecord) : undefined;
}
