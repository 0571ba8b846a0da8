/**
 * The identity of a stopped or running cluster read from its data directory, for `walts init
 * --pgdata`: the system identifier and WAL segment size from `global/pg_control`, the major version
 * from `PG_VERSION`. Pure parsing apart from reading those two files.
 *
 * ControlFileData starts with the 64-bit system identifier. The segment size sits after a
 * version-dependent block, right behind the `floatFormat` check value (the double 1234567.0) and
 * three other uint32 (blcksz, relseg_size, xlog_blcksz): walts finds it through that value, so no
 * per-version offset table is needed, and checks every number it reads.
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../errors';
import { magicForMajor } from './walHeader';
import { isValidSegmentSize } from './walName';

export interface ClusterIdentity {
  readonly systemIdentifier: string;
  readonly pgMajor: number;
  readonly magic: number;
  readonly segmentSize: number;
}

const FLOAT_FORMAT = 1234567.0;

export async function readClusterIdentity(pgdata: string): Promise<ClusterIdentity> {
  const read = (file: string) =>
    fsp.readFile(join(pgdata, file)).catch((err: NodeJS.ErrnoException) => {
      throw new ConfigError(`--pgdata: cannot read ${join(pgdata, file)}: ${err.code ?? err.message} (is ${pgdata} a PostgreSQL data directory?)`);
    });
  const [version, control] = await Promise.all([read('PG_VERSION'), read('global/pg_control')]);
  const pgMajor = Number(version.toString('utf8').trim());
  const magic = Number.isInteger(pgMajor) ? magicForMajor(pgMajor) : undefined;
  if (magic === undefined) throw new ConfigError(`--pgdata: ${pgdata}/PG_VERSION says ${JSON.stringify(version.toString('utf8').trim())}, not a PostgreSQL major version walts knows`);
  const parsed = parseControlFile(control);
  if (typeof parsed === 'string') throw new ConfigError(`--pgdata: ${pgdata}/global/pg_control: ${parsed}`);
  return { ...parsed, pgMajor, magic };
}

export function parseControlFile(buf: Buffer): { systemIdentifier: string; segmentSize: number } | string {
  if (buf.length < 512) return `too short (${buf.length} bytes)`;
  for (let off = 16; off + 24 <= 512; off += 8) {
    if (buf.readDoubleLE(off) !== FLOAT_FORMAT) continue;
    const [blcksz, , xlogBlcksz, segmentSize] = [0, 4, 8, 12].map((d) => buf.readUInt32LE(off + 8 + d)) as [number, number, number, number];
    const pageOk = (n: number) => n >= 1024 && n <= 32768 && (n & (n - 1)) === 0;
    if (!pageOk(blcksz) || !pageOk(xlogBlcksz) || !isValidSegmentSize(segmentSize)) return 'unexpected block or segment sizes';
    return { systemIdentifier: buf.readBigUInt64LE(0).toString(), segmentSize };
  }
  return 'not a little-endian PostgreSQL control file';
}
