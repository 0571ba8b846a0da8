/**
 * The archive's own record (`walts_v1/archive.json`), written once by `walts init`.
 *
 * Its presence is what makes a store location an archive: only inside an archive that is known to
 * exist may a missing key mean "not archived". Without it, a missing or unmounted directory, an
 * empty mount point or a wrong bucket/prefix would answer "not found" to every request, and
 * PostgreSQL would end recovery early on that answer. So every command opens the archive first
 * (wal-fetch only on its not-found path, to keep its usual case to one request) and refuses a
 * location without the record.
 *
 * The record also says whether the archive is encrypted, so that a host without the public key
 * cannot add plaintext to an encrypted archive, and keeps the result of the conditional-create
 * probe of the storage service. Everything in it may have been written by someone with write
 * access to the bucket, so it is parsed strictly and only ever makes walts more careful.
 *
 * Archives made before `walts init` existed have no archive.json; their `cluster.json` (written by
 * the first wal-push) proves that they exist, and `walts init` adopts them.
 */
import { ConfigError, IntegrityError, NotFoundError, ObjectExistsError } from '../errors';
import type { Storage } from '../storage/storage';
import { readAll } from '../util/streams';
import { readClusterRecord, type ClusterRecord } from './cluster';
import { ARCHIVE_KEY } from './layout';

export type ArchiveEncryption = { readonly method: 'none' } | { readonly method: 'openpgp'; readonly fingerprints: readonly string[] };

export interface ArchiveRecord {
  readonly format: 1;
  readonly created_at: string;
  readonly created_by: string;
  readonly walts_version: string;
  readonly encryption: ArchiveEncryption;
  /** When a later `walts init` with a public key recorded that the archive is now encrypted. */
  readonly encrypted_since?: string;
  /** Result of the conditional-create probe of the service named, when the store needed one. */
  readonly conditional_put?: { readonly service: string; readonly honoured: boolean };
}

/** What a command knows about the archive once it is open. */
export interface OpenArchive {
  /** Undefined for an archive made before `walts init` (adopted by running it). */
  readonly record?: ArchiveRecord;
  /** The cluster that owns the archive, once one has claimed it. */
  readonly cluster?: ClusterRecord;
}

const MAX_RECORD = 64 << 10;
const FINGERPRINT_RE = /^[0-9a-f]{40,64}$/;

export async function readArchiveRecord(storage: Storage, signal?: AbortSignal): Promise<ArchiveRecord | undefined> {
  let obj;
  try {
    obj = await storage.get(ARCHIVE_KEY, { signal });
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
  const text = (await readAll(obj.body, MAX_RECORD)).toString('utf8');
  try {
    return parseArchiveRecord(JSON.parse(text));
  } catch (err) {
    throw new IntegrityError(`${ARCHIVE_KEY} in ${storage.description} is unreadable (${(err as Error).message}); restore it or remove it by hand`);
  }
}

/** Strict: an unknown format or encryption method is refused rather than guessed at. */
export function parseArchiveRecord(value: unknown): ArchiveRecord {
  const r = value as Partial<ArchiveRecord> | null;
  if (!r || typeof r !== 'object' || r.format !== 1) throw new Error('unknown format');
  for (const field of ['created_at', 'created_by', 'walts_version'] as const) {
    if (typeof r[field] !== 'string') throw new Error(`${field} is not a string`);
  }
  const enc = r.encryption as { method?: unknown; fingerprints?: unknown } | undefined;
  if (!enc || (enc.method !== 'none' && enc.method !== 'openpgp')) throw new Error('unknown encryption method');
  if (enc.method === 'openpgp' && !(Array.isArray(enc.fingerprints) && enc.fingerprints.every((f) => typeof f === 'string' && FINGERPRINT_RE.test(f)))) {
    throw new Error('encryption.fingerprints is not a list of key fingerprints');
  }
  const cp = r.conditional_put as { service?: unknown; honoured?: unknown } | undefined;
  if (cp !== undefined && (typeof cp !== 'object' || cp === null || typeof cp.service !== 'string' || typeof cp.honoured !== 'boolean')) {
    throw new Error('conditional_put is malformed');
  }
  return r as ArchiveRecord;
}

/** The one-line refusal for a location that holds no archive (a configuration error). */
export function notAnArchive(storage: Storage): ConfigError {
  return new ConfigError(
    `WALTS_STORE ${storage.description} holds no walts archive (no ${ARCHIVE_KEY}): check that WALTS_STORE is right and the store is mounted; to create a new archive there, run \`walts init\``,
  );
}

/**
 * Opens the archive at the configured location: its record, or (archives made before `walts init`)
 * its cluster record. A missing directory or bucket fails in the store itself (unavailable); a
 * reachable location with neither record is a configuration error. Both requests run at once.
 */
export async function openArchive(storage: Storage, signal?: AbortSignal): Promise<OpenArchive> {
  const [record, cluster] = await Promise.all([readArchiveRecord(storage, signal), readClusterRecord(storage, signal)]);
  if (!record && !cluster) throw notAnArchive(storage);
  return { record, cluster };
}

export function isEncrypted(archive: OpenArchive): boolean {
  return archive.record?.encryption.method === 'openpgp';
}

/**
 * Refuses to add plaintext to an archive recorded as encrypted: a restore host, or a host whose
 * configuration lost the key, would otherwise write readable data next to encrypted data.
 */
export function checkWriteEncryption(archive: OpenArchive, encrypting: boolean, storage: Storage): void {
  if (isEncrypted(archive) && !encrypting) {
    throw new ConfigError(
      `${storage.description} is an encrypted archive (${ARCHIVE_KEY}) but WALTS_PGP_PUBLIC_KEY is not set: refusing to write unencrypted data into it`,
    );
  }
}

/** Writes the record with create-if-absent; false when another writer created it first. */
export async function createArchiveRecord(storage: Storage, record: ArchiveRecord): Promise<boolean> {
  try {
    await storage.put(ARCHIVE_KEY, serialise(record), { ifAbsent: true });
    return true;
  } catch (err) {
    if (err instanceof ObjectExistsError) return false;
    throw err;
  }
}

/** Replaces the record (only to record that the archive became encrypted: a one-way change). */
export async function replaceArchiveRecord(storage: Storage, record: ArchiveRecord): Promise<void> {
  await storage.put(ARCHIVE_KEY, serialise(record));
}

function serialise(record: ArchiveRecord): Buffer {
  return Buffer.from(JSON.stringify(record, null, 2) + '\n');
}


