/**
 * Reading what `walts wal-receive` keeps of the segment it is still receiving:
 * `receive/<slot>/<segment>.partial<codecs>` (layout.ts; docs/storage-format.md, "Streamed WAL in
 * progress"). Such an object holds the bytes received from the segment's start, not padded, with
 * the metadata of any WAL object (walts-sha256 and walts-size of those bytes, walts-stored-size).
 * It is rewritten as the segment grows, so a reader can meet an older version, or (on stores
 * without atomic overwrite) a torn one: nothing here trusts it before its digest is checked.
 */
import type { ObjectInfo, Storage } from '../storage/storage';
import { parseReceivedPartialKey, parseReceiverRecordKey, RECEIVE_ROOT } from './layout';
import { completeFacts, type PlainFacts } from './objectMeta';
import { readReceiverRecord } from './receiverRecord';

export interface ReceivedPartial {
  readonly key: string;
  readonly slot: string;
  /** The segment's WAL file name (24 hex digits). */
  readonly segment: string;
  readonly codecs: readonly string[];
  /** Size of the stored object, as listed. */
  readonly storedSize: number;
  readonly lastModifiedMs?: number;
}

export interface HeadedPartial extends ReceivedPartial {
  /** Set when the object is whole and carries walts' record (digest and size of the received bytes). */
  readonly facts?: PlainFacts;
  readonly info: ObjectInfo;
}

/** Every received partial in the store (one LIST of `receive/`: a few objects per slot at most). */
export async function listReceivedPartials(storage: Storage, signal?: AbortSignal): Promise<ReceivedPartial[]> {
  const found: ReceivedPartial[] = [];
  for await (const o of storage.list(`${RECEIVE_ROOT}/`, { signal })) {
    const p = parseReceivedPartialKey(o.key);
    if (p) found.push({ key: o.key, slot: p.slot, segment: p.segment, codecs: p.codecs, storedSize: o.size, lastModifiedMs: o.lastModified?.getTime() });
  }
  return found;
}

/**
 * The slots whose receiver streams cluster `systemId` into this archive: those with a valid
 * `receiver.json` naming that system (receiverRecord.ts), which stays in the folder between
 * segments. A slot whose folder has a partial but no record at all (a receiver of a walts from
 * before the record) counts too; a record that is malformed or names another system rules the slot out.
 */
export async function feedingSlots(storage: Storage, systemId: string, signal?: AbortSignal): Promise<Set<string>> {
  const withRecord = new Set<string>();
  const withPartial = new Set<string>();
  for await (const o of storage.list(`${RECEIVE_ROOT}/`, { signal })) {
    const recordOf = parseReceiverRecordKey(o.key);
    if (recordOf !== undefined) withRecord.add(recordOf);
    const p = parseReceivedPartialKey(o.key);
    if (p) withPartial.add(p.slot);
  }
  const slots = new Set([...withPartial].filter((s) => !withRecord.has(s)));
  for (const slot of withRecord) {
    const record = await readReceiverRecord(storage, slot, signal);
    if (record?.system_identifier === systemId) slots.add(slot);
  }
  return slots;
}

/** Adds each object's metadata (one HEAD each); objects gone meanwhile are left out. */
export async function headPartials(storage: Storage, partials: readonly ReceivedPartial[], signal?: AbortSignal): Promise<HeadedPartial[]> {
  const headed = await Promise.all(
    partials.map(async (p) => {
      const info = await storage.head(p.key, { signal });
      return info ? [{ ...p, info, facts: completeFacts(info) }] : [];
    }),
  );
  return headed.flat();
}

/**
 * Candidates for serving `segment`, longest recorded content first (all slots). Those walts cannot
 * vouch for (torn: stored size differs from the recorded one; or no record) come last, in `unusable`.
 */
export function rankCandidates(headed: readonly HeadedPartial[], segment: string): { usable: HeadedPartial[]; unusable: HeadedPartial[] } {
  const mine = headed.filter((h) => h.segment === segment);
  const usable = mine.filter((h) => h.facts !== undefined).sort((a, b) => b.facts!.size - a.facts!.size || (a.key < b.key ? -1 : 1));
  return { usable, unusable: mine.filter((h) => h.facts === undefined) };
}

/** The newest partial per slot (highest segment name; on a tie, the later write). */
export function newestPerSlot<T extends ReceivedPartial>(partials: readonly T[]): T[] {
  const bySlot = new Map<string, T>();
  for (const p of partials) {
    const cur = bySlot.get(p.slot);
    if (!cur || p.segment > cur.segment || (p.segment === cur.segment && (p.lastModifiedMs ?? 0) > (cur.lastModifiedMs ?? 0))) bySlot.set(p.slot, p);
  }
  return [...bySlot.values()].sort((a, b) => (a.slot < b.slot ? -1 : 1));
}
