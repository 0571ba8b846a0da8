/**
 * Where everything lives in a store. Pure: the only module that builds keys.
 *
 *   walts_v1/cluster.json                                    identity of the cluster that owns the prefix
 *   walts_v1/wal/<timeline+log id, 16 hex>/<segment><codecs>  segments, .partial and .backup files
 *   walts_v1/wal/history/<TLI>.history<codecs>               timeline history files
 *
 * `<codecs>` is the suffix of the codecs applied in order (`.lz4`, `.lz4.pgp`, `.pgp`, or nothing),
 * so a WAL object's key is a pure function of the WAL file name and the codecs. The 16-hex folder
 * keeps listings short (256 segments of 16 MiB per folder) and groups a timeline's WAL.
 * docs/storage-format.md describes the same layout for humans; keep them in step.
 */
import { splitCodecSuffix } from '../codec/chain';
import { parseWalFileName, type WalFileName } from '../postgres/walName';

export const LAYOUT_VERSION = 1;
export const ROOT = `walts_v${LAYOUT_VERSION}`;
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

/** Parses a WAL object key back into its WAL file name and codecs; undefined for foreign keys. */
export function parseWalKey(key: string): { name: WalFileName; codecs: string[] } | undefined {
  if (!key.startsWith(`${WAL_ROOT}/`)) return undefined;
  const slash = key.lastIndexOf('/');
  const { base, codecs } = splitCodecSuffix(key.slice(slash + 1));
  const name = parseWalFileName(base);
  if (!name || walDir(name) !== key.slice(0, slash)) return undefined;
  return { name, codecs };
}
