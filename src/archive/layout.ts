/**
 * Where everything lives in a store. Pure: the only module that builds keys.
 *
 *   walts_v1/archive.json                                    the archive exists: written by `walts init`
 *   walts_v1/cluster.json                                    identity of the cluster that owns the prefix
 *   walts_v1/wal/<timeline+log id, 16 hex>/<segment><codecs>  segments, .partial and .backup files
 *   walts_v1/wal/history/<TLI>.history<codecs>               timeline history files
 *   walts_v1/receive/<slot>/<segment>.partial<codecs>         a receiver's segment in progress
 *   walts_v1/receive/<slot>/receiver.json                     the receiver's record (plain JSON, overwritten)
 *
 * `<codecs>` is the suffix of the codecs applied in order (`.lz4` or `.zst`, then `.pgp`, or nothing),
 * so a WAL object's key is a pure function of the WAL file name and the codecs. The 16-hex folder
 * keeps listings short (256 segments of 16 MiB per folder) and groups a timeline's WAL.
 * docs/storage-format.md describes the same layout for humans; keep them in step.
 */
import { splitCodecSuffix } from '../codec/chain';
import { parseWalFileName, type WalFileName } from '../postgres/walName';

export const LAYOUT_VERSION = 1;
export const ROOT = `walts_v${LAYOUT_VERSION}`;
/** Proof that the archive exists (see archive/archive.ts). */
export const ARCHIVE_KEY = `${ROOT}/archive.json`;
export const CLUSTER_KEY = `${ROOT}/cluster.json`;
export const WAL_ROOT = `${ROOT}/wal`;
export const HISTORY_DIR = `${WAL_ROOT}/history`;
/** Scratch keys for probing store behaviour; always deleted after use. */
export const PROBE_PREFIX = `${ROOT}/probe/`;

export function walDir(name: WalFileName): string {
  return name.kind === 'history' ? HISTORY_DIR : `${WAL_ROOT}/${name.name.slice(0, 16)}`;
}

export function walKey(name: WalFileName, codecSuffix: string): string {
  return `${walDir(name)}/${name.name}${codecSuffix}`;
}

/** The listing prefix under which every stored variant of `name` (any codecs) sits. */
export function walVariantsPrefix(name: WalFileName): string {
  return `${walDir(name)}/${name.name}`;
}

/**
 * WAL streamed by `walts wal-receive` through replication slot <slot>: the segment it is writing,
 * as the bytes received from the segment's start (not padded), rewritten as it grows (receive/ is
 * the only namespace whose objects are overwritten: these and receiver.json) and deleted once the complete segment is archived
 * under WAL_ROOT. Kept apart from WAL_ROOT because `<segment>.partial` there is PostgreSQL's own
 * file (archived by a promoted standby), which is never overwritten. One folder per slot: two
 * receivers of one cluster on different slots never write the same key.
 */
export const RECEIVE_ROOT = `${ROOT}/receive`;
const SLOT_RE = /^[a-z0-9_]{1,63}$/;
const SEGMENT_RE = /^[0-9A-F]{24}$/;

export function receivedPartialKey(slot: string, segment: string, codecSuffix: string): string {
  if (!SLOT_RE.test(slot)) throw new RangeError(`not a replication slot name: ${JSON.stringify(slot)}`);
  if (!SEGMENT_RE.test(segment)) throw new RangeError(`not a WAL segment name: ${JSON.stringify(segment)}`);
  return `${RECEIVE_ROOT}/${slot}/${segment}.partial${codecSuffix}`;
}

/**
 * The record a receiver on <slot> writes (overwriting the last one) each time it starts streaming:
 * which cluster it streams from (archive/receiverRecord.ts). It stays while the slot's folder holds
 * no partial (an idle server right after a segment switch), which is what lets backup-push see the
 * receiver then. Not a partial: parseReceivedPartialKey ignores it.
 */
export function receiverRecordKey(slot: string): string {
  if (!SLOT_RE.test(slot)) throw new RangeError(`not a replication slot name: ${JSON.stringify(slot)}`);
  return `${RECEIVE_ROOT}/${slot}/receiver.json`;
}

/** The slot whose receiver record `key` is; undefined for any other key. */
export function parseReceiverRecordKey(key: string): string | undefined {
  if (!key.startsWith(`${RECEIVE_ROOT}/`) || !key.endsWith('/receiver.json')) return undefined;
  const slot = key.slice(RECEIVE_ROOT.length + 1, -'/receiver.json'.length);
  return SLOT_RE.test(slot) ? slot : undefined;
}

/** Parses a received-partial key; undefined for anything else (a foreign or malformed key). */
export function parseReceivedPartialKey(key: string): { slot: string; segment: string; codecs: string[] } | undefined {
  if (!key.startsWith(`${RECEIVE_ROOT}/`)) return undefined;
  const [slot, file, ...rest] = key.slice(RECEIVE_ROOT.length + 1).split('/');
  if (!slot || !SLOT_RE.test(slot) || !file || rest.length > 0) return undefined;
  const { base, codecs } = splitCodecSuffix(file);
  if (!base.endsWith('.partial')) return undefined;
  const segment = base.slice(0, -'.partial'.length);
  return SEGMENT_RE.test(segment) ? { slot, segment, codecs } : undefined;
}

/** Parses a WAL object key back into its WAL file name and codecs; undefined for foreign keys. */
export function parseWalKey(key: string): { name: WalFileName; codecs: string[] } | undefined {
  if (!key.startsWith(`${WAL_ROOT}/`)) return undefined;
  const slash = key.lastIndexOf('/');
  const { base, codecs } = splitCodecSuffix(key.slice(slash + 1));
  const name = parseWalFileName(base);
  if (!name || walDir(name) !== key.slice(0, slash)) return undefined;
  return { name, codecs };
}

/**
 * Base backups:
 *
 *   walts_v1/basebackups/<name>/started.json                    in-progress marker, written first
 *   walts_v1/basebackups/<name>/part_00001.tar<codecs>          size-bounded tar volumes
 *   walts_v1/basebackups/<name>/manifest.jsonl<codecs>          every file: path, size, mode, SHA-256
 *   walts_v1/basebackups/<name>/sentinel.json                   completion record, written last
 *   walts_v1/basebackups/<name>/deleting.json                   tombstone while `delete` removes it
 *
 * No sentinel, no backup. The sentinel sits inside the backup's folder (not beside it as
 * `<name>.json`): some S3-compatible servers list `P/x` and `P.json` out of order.
 */
export const BACKUP_ROOT = `${ROOT}/basebackups`;
const BACKUP_NAME_RE = /^base_[0-9A-F]{24}_[0-9A-F]{8}$/;

/** `base_<start WAL file>_<offset of the start LSN in that file>`, as WAL-E named them. */
export function backupName(startWalFile: string, startOffset: number): string {
  return `base_${startWalFile}_${startOffset.toString(16).toUpperCase().padStart(8, '0')}`;
}

export function isBackupName(name: string): boolean {
  return BACKUP_NAME_RE.test(name);
}

export function backupDir(name: string): string {
  if (!isBackupName(name)) throw new RangeError(`not a backup name: ${JSON.stringify(name)}`);
  return `${BACKUP_ROOT}/${name}`;
}

export const backupKeys = {
  started: (name: string) => `${backupDir(name)}/started.json`,
  /** Written by `delete` before it removes anything of the backup: an interrupted delete is resumed. */
  deleting: (name: string) => `${backupDir(name)}/deleting.json`,
  sentinel: (name: string) => `${backupDir(name)}/sentinel.json`,
  /** Ed25519 signature of the sentinel's bytes (signed backups only), written just before it. */
  signature: (name: string) => `${backupDir(name)}/sentinel.json.sig`,
  manifest: (name: string, codecSuffix: string) => `${backupDir(name)}/manifest.jsonl${codecSuffix}`,
  volume: (name: string, index: number, codecSuffix: string) => `${backupDir(name)}/part_${String(index).padStart(5, '0')}.tar${codecSuffix}`,
};

/** The backup a key belongs to, and which part of it the key is. */
/**
 * Restore drills (`walts restore-test`): one plain JSON record per drill, never overwritten.
 *
 *   walts_v1/drills/drill_<YYYYMMDDTHHMMSSmmmZ>_<backup name>.json
 *
 * The UTC start time first, fixed width, so key order is time order and the newest drill is the last
 * key listed. `delete` keeps them (only `delete everything` removes them).
 */
export const DRILL_ROOT = `${ROOT}/drills`;
const DRILL_KEY_RE = /^walts_v1\/drills\/drill_(\d{8}T\d{9}Z)_(base_[0-9A-F]{24}_[0-9A-F]{8})\.json$/;

export function drillKey(startedAtMs: number, backup: string): string {
  if (!isBackupName(backup)) throw new RangeError(`not a backup name: ${JSON.stringify(backup)}`);
  const iso = new Date(startedAtMs).toISOString(); // 2026-12-02T12:34:56.789Z
  const stamp = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}T${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}${iso.slice(20, 23)}Z`;
  return `${DRILL_ROOT}/drill_${stamp}_${backup}.json`;
}

/** The drill a key records (its backup), or undefined for a key that is not a drill record. */
export function parseDrillKey(key: string): { stamp: string; backup: string } | undefined {
  const m = DRILL_KEY_RE.exec(key);
  return m ? { stamp: m[1]!, backup: m[2]! } : undefined;
}

export function parseBackupKey(key: string): { name: string; part: 'started' | 'deleting' | 'sentinel' | 'manifest' | 'volume' | 'other' } | undefined {
  if (!key.startsWith(`${BACKUP_ROOT}/`)) return undefined;
  const [name, file, ...rest] = key.slice(BACKUP_ROOT.length + 1).split('/');
  if (!name || !isBackupName(name) || !file || rest.length > 0) return undefined;
  const part = file === 'started.json' ? 'started' : file === 'deleting.json' ? 'deleting' : file === 'sentinel.json' ? 'sentinel' : file.startsWith('manifest.jsonl') ? 'manifest' : /^part_\d{5}\.tar/.test(file) ? 'volume' : 'other';
  return { name, part };
}
