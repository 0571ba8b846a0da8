/**
 * A receiver's record, `receive/<slot>/receiver.json` (layout.ts receiverRecordKey; docs/storage-format.md,
 * "Streamed WAL in progress"): plain JSON that `walts wal-receive` writes, overwriting the last one,
 * each time a session starts streaming, after it has checked that the server is the archive's cluster.
 *
 * It exists so that backup-push can tell, with archive_mode off, that a receiver feeds this archive
 * even when the slot's folder holds no partial (an idle server right after a segment switch). Read
 * back from the store, it is untrusted input: anything malformed counts as no record.
 */
import type { Storage } from '../storage/storage';
import { readAll } from '../util/streams';
import { receiverRecordKey } from './layout';

export interface ReceiverRecord {
  readonly slot: string;
  /** pg_control's system identifier as decimal text (it does not fit a JS number). */
  readonly system_identifier: string;
  readonly timeline: number;
  readonly host: string;
  readonly pid: number;
  readonly started_at: string;
  readonly walts_version: string;
}

/** Far more than a record takes: a bigger object is not one. */
const MAX_RECORD_BYTES = 64 * 1024;

export async function writeReceiverRecord(storage: Storage, record: ReceiverRecord, signal?: AbortSignal): Promise<void> {
  await storage.put(receiverRecordKey(record.slot), Buffer.from(JSON.stringify(record) + '\n'), { signal });
}

/** The record of `slot`'s receiver; undefined when there is none, or it is not a valid record of that slot. */
export async function readReceiverRecord(storage: Storage, slot: string, signal?: AbortSignal): Promise<ReceiverRecord | undefined> {
  let obj;
  try {
    obj = await storage.get(receiverRecordKey(slot), { signal });
  } catch (err) {
    if ((err as Error).name === 'NotFoundError') return undefined;
    throw err;
  }
  let bytes: Buffer;
  try {
    bytes = await readAll(obj.body, MAX_RECORD_BYTES);
  } catch (err) {
    if (err instanceof RangeError) return undefined; // too big to be a record
    throw err;
  }
  return parseReceiverRecord(bytes, slot);
}

/** Validates a record's bytes for `slot`: every field present with its type, the slot its own. */
export function parseReceiverRecord(bytes: Buffer, slot: string): ReceiverRecord | undefined {
  let v: unknown;
  try {
    v = JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const r = v as Record<string, unknown>;
  const ok =
    r.slot === slot &&
    typeof r.system_identifier === 'string' &&
    /^[1-9][0-9]{0,19}$/.test(r.system_identifier) &&
    Number.isSafeInteger(r.timeline) &&
    (r.timeline as number) >= 1 &&
    typeof r.host === 'string' &&
    Number.isSafeInteger(r.pid) &&
    typeof r.started_at === 'string' &&
    !Number.isNaN(Date.parse(r.started_at)) &&
    typeof r.walts_version === 'string';
  if (!ok) return undefined;
  return {
    slot,
    system_identifier: r.system_identifier as string,
    timeline: r.timeline as number,
    host: r.host as string,
    pid: r.pid as number,
    started_at: r.started_at as string,
    walts_version: r.walts_version as string,
  };
}
