/**
 * The 512-byte header block of POSIX ustar and the pax extended-header records that carry what does
 * not fit in it. Pure: no I/O. References: POSIX.1-2017 `pax`, sections "ustar Interchange Format"
 * (field table, checksum) and "pax Extended Header" (records, keywords); GNU tar's `tar.h` for the
 * GNU magic, base-256 numbers and the 'L'/'K' long-name entries.
 */
import { IntegrityError } from '../errors';

/** Tar works in 512-byte blocks: headers are one block, bodies are padded to a multiple of it. */
export const BLOCK_SIZE = 512;
/** End of archive: two zero blocks (POSIX ustar). Shared: do not modify. */
export const TAR_END: Buffer = Buffer.alloc(2 * BLOCK_SIZE);
/** The largest value of the 12-byte size/mtime fields: 11 octal digits + NUL = 8^11 - 1 (8 GiB - 1). */
export const MAX_OCTAL_11 = 8 ** 11 - 1;

export type TarEntryType = 'file' | 'directory' | 'symlink';

/** What walts writes and reads for one entry. Owner is always 0/0 with empty names. */
export interface TarEntryHeader {
  /** '/'-separated path inside the archive; a directory's path ends with '/'. */
  path: string;
  type: TarEntryType;
  /** Body length in bytes; 0 for directories and symlinks. */
  size: number;
  /** Permission bits (mode & 0o7777). */
  mode: number;
  /** Modification time in whole seconds since the epoch. */
  mtime: number;
  /** Symlink target; present for symlinks only. */
  linkname?: string;
}

/** The fields of one decoded header block, before pax/GNU long names are applied. */
export interface UstarBlock {
  name: string;
  /** One character: '0', '5', 'x', 'L', ... ('\0' is the pre-POSIX regular file). */
  typeflag: string;
  size: number;
  mode: number;
  mtime: number;
  linkname: string;
}

type Field = readonly [offset: number, length: number];
// Offsets and lengths from the POSIX "ustar Header Block" table.
const NAME: Field = [0, 100];
const MODE: Field = [100, 8];
const UID: Field = [108, 8];
const GID: Field = [116, 8];
const SIZE: Field = [124, 12];
const MTIME: Field = [136, 12];
const CHKSUM: Field = [148, 8];
const TYPEFLAG = 156;
const LINKNAME: Field = [157, 100];
const MAGIC: Field = [257, 8]; // magic[6] + version[2]
const DEVMAJOR: Field = [329, 8];
const DEVMINOR: Field = [337, 8];
const PREFIX: Field = [345, 155];
const POSIX_MAGIC = 'ustar\x0000'; // "ustar\0" + version "00"
const GNU_MAGIC = 'ustar  \x00'; // GNU tar's pre-POSIX "ustar " + " \0"; no prefix field

const TYPE_FLAGS: Record<TarEntryType, string> = { file: '0', directory: '5', symlink: '2' };

/** Zeros from `size` up to the next 512-byte boundary (empty when already aligned). */
export function tarPadding(size: number): Buffer {
  return Buffer.alloc((BLOCK_SIZE - (size % BLOCK_SIZE)) % BLOCK_SIZE);
}

/**
 * The header of one entry: a ustar block, preceded by a pax 'x' entry when a value does not fit
 * (path or linkname over 100 bytes or not ASCII, size >= 8 GiB, mtime outside 0..8^11-1). A
 * directory's path gets a trailing '/'. Throws RangeError on an entry tar cannot represent (empty path,
 * NUL, negative or fractional size, mode outside 0..0o7777, size or linkname on the wrong type).
 */
export function tarHeader(entry: TarEntryHeader): Buffer {
  const { type, size, mode } = entry;
  const mtime = Math.floor(entry.mtime);
  const path = type === 'directory' && !entry.path.endsWith('/') ? `${entry.path}/` : entry.path;
  const linkname = entry.linkname ?? '';
  checkEntry(entry, path, linkname, mtime);
  const records: [string, string][] = [];
  if (!fitsUstar(path)) records.push(['path', path]);
  if (!fitsUstar(linkname)) records.push(['linkpath', linkname]);
  if (size > MAX_OCTAL_11) records.push(['size', String(size)]);
  const mtimeFits = mtime >= 0 && mtime <= MAX_OCTAL_11;
  if (!mtimeFits) records.push(['mtime', String(mtime)]);
  const main = encodeUstarBlock({
    name: fitsUstar(path) ? path : asciiFallback(path),
    typeflag: TYPE_FLAGS[type],
    size: size > MAX_OCTAL_11 ? 0 : size, // POSIX: a pax value overrides the ustar field
    mode,
    mtime: mtimeFits ? mtime : 0,
    linkname: fitsUstar(linkname) ? linkname : asciiFallback(linkname),
  });
  if (records.length === 0) return main;
  const body = encodePaxRecords(records);
  const base = path.replace(/\/+$/, '').split('/').pop() ?? '';
  const pax = encodeUstarBlock({
    name: asciiFallback(`PaxHeaders/${base}`), // what a reader without pax support extracts it as
    typeflag: 'x',
    size: body.length,
    mode: 0o644,
    mtime: mtimeFits ? mtime : 0,
    linkname: '',
  });
  return Buffer.concat([pax, body, tarPadding(body.length), main]);
}

function checkEntry(entry: TarEntryHeader, path: string, linkname: string, mtime: number): void {
  const what = `tar entry ${JSON.stringify(entry.path)}`;
  if (!Object.hasOwn(TYPE_FLAGS, entry.type)) throw new RangeError(`${what}: unknown type ${String(entry.type)}`);
  if (path === '' || path.includes('\0')) throw new RangeError(`${what}: empty path or NUL in path`);
  if (!Number.isSafeInteger(entry.size) || entry.size < 0) throw new RangeError(`${what}: bad size ${entry.size}`);
  if (entry.type !== 'file' && entry.size !== 0) throw new RangeError(`${what}: a ${entry.type} has size 0`);
  if (!Number.isInteger(entry.mode) || entry.mode < 0 || entry.mode > 0o7777) throw new RangeError(`${what}: bad mode ${entry.mode}`);
  if (!Number.isSafeInteger(mtime)) throw new RangeError(`${what}: bad mtime ${entry.mtime}`);
  if ((entry.type === 'symlink') !== (linkname !== '')) throw new RangeError(`${what}: a symlink, and only a symlink, has a linkname`);
  if (linkname.includes('\0')) throw new RangeError(`${what}: NUL in linkname`);
}

/** A value fits a 100-byte ustar name field when it is ASCII (one byte per char) and short enough. */
function fitsUstar(s: string): boolean {
  return s.length <= NAME[1] && /^[\x01-\x7f]*$/.test(s);
}

/** What old readers see when pax carries the real value: ASCII, cut to 100 bytes. */
function asciiFallback(s: string): string {
  return s.replace(/[^\x01-\x7f]/gu, '_').slice(0, NAME[1]);
}

/** Encodes one header block; numbers must fit their octal fields. The checksum is filled in last. */
export function encodeUstarBlock(h: UstarBlock): Buffer {
  const b = Buffer.alloc(BLOCK_SIZE);
  b.write(h.name, NAME[0], NAME[1], 'utf8');
  writeOctal(b, MODE, h.mode);
  writeOctal(b, UID, 0);
  writeOctal(b, GID, 0);
  writeOctal(b, SIZE, h.size);
  writeOctal(b, MTIME, h.mtime);
  b.write(h.typeflag, TYPEFLAG, 1, 'latin1');
  b.write(h.linkname, LINKNAME[0], LINKNAME[1], 'utf8');
  b.write(POSIX_MAGIC, MAGIC[0], MAGIC[1], 'latin1');
  writeOctal(b, DEVMAJOR, 0);
  writeOctal(b, DEVMINOR, 0);
  // POSIX leaves the checksum layout open; "6 octal digits, NUL, space" is what GNU tar writes.
  b.write(`${checksum(b).unsigned.toString(8).padStart(6, '0')}\0 `, CHKSUM[0], CHKSUM[1], 'latin1');
  return b;
}

/** Zero-padded octal with a terminating NUL, filling the field (POSIX: "leading zero-filled"). */
function writeOctal(b: Buffer, [offset, length]: Field, n: number): void {
  const digits = n.toString(8).padStart(length - 1, '0');
  if (digits.length > length - 1) throw new RangeError(`tar: ${n} does not fit a ${length}-byte field`);
  b.write(`${digits}\0`, offset, length, 'latin1');
}

/**
 * POSIX: the sum of all header bytes as unsigned values, with the checksum field counted as eight
 * spaces. Some historic tars summed signed chars; readers (GNU tar too) accept either.
 */
function checksum(b: Buffer): { unsigned: number; signed: number } {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK_SIZE; i++) {
    const byte = i >= CHKSUM[0] && i < CHKSUM[0] + CHKSUM[1] ? 0x20 : b[i]!;
    unsigned += byte;
    signed += byte > 0x7f ? byte - 0x100 : byte;
  }
  return { unsigned, signed };
}

export function isZeroBlock(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/**
 * Decodes and checks one header block: the checksum must match and the magic must be POSIX ustar or
 * GNU. The POSIX prefix field is joined to the name here. Throws IntegrityError otherwise.
 */
export function decodeUstarBlock(b: Buffer): UstarBlock {
  const stored = readNumber(b, CHKSUM, 'checksum');
  const sum = checksum(b);
  if (stored !== sum.unsigned && stored !== sum.signed) throw new IntegrityError(`tar: header checksum mismatch (stored ${stored}, computed ${sum.unsigned}): corrupt archive`);
  const magic = b.toString('latin1', MAGIC[0], MAGIC[0] + MAGIC[1]);
  if (magic !== POSIX_MAGIC && magic !== GNU_MAGIC) throw new IntegrityError(`tar: not a ustar header (magic ${JSON.stringify(magic)})`);
  const name = cString(b, NAME);
  const prefix = magic === POSIX_MAGIC ? cString(b, PREFIX) : '';
  return {
    name: prefix === '' ? name : `${prefix}/${name}`,
    typeflag: String.fromCharCode(b[TYPEFLAG]!),
    size: readNumber(b, SIZE, 'size'),
    mode: readNumber(b, MODE, 'mode') & 0o7777,
    mtime: readNumber(b, MTIME, 'mtime'),
    linkname: cString(b, LINKNAME),
  };
}

/** A NUL-terminated (or field-filling) string. Names are taken as UTF-8, as GNU tar writes them here. */
function cString(b: Buffer, [offset, length]: Field): string {
  const end = b.indexOf(0, offset);
  return b.toString('utf8', offset, end < 0 || end > offset + length ? offset + length : end);
}

/** Octal (spaces/NUL around it allowed), or GNU base-256 when the top bit of the first byte is set. */
function readNumber(b: Buffer, [offset, length]: Field, what: string): number {
  const first = b[offset]!;
  if (first & 0x80) {
    if (first === 0xff) throw new IntegrityError(`tar: negative ${what} in header`);
    let n = BigInt(first & 0x7f);
    for (let i = 1; i < length; i++) n = (n << 8n) | BigInt(b[offset + i]!);
    if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new IntegrityError(`tar: ${what} ${n} is too large`);
    return Number(n);
  }
  const text = b.toString('latin1', offset, offset + length).replace(/\0.*$/s, '').trim();
  if (!/^[0-7]*$/.test(text)) throw new IntegrityError(`tar: bad octal ${what} ${JSON.stringify(text)} in header`);
  return text === '' ? 0 : parseInt(text, 8);
}

/**
 * pax records, each "<length> <keyword>=<value>\n" where <length> counts the whole record in bytes,
 * its own digits included (POSIX pax, "pax Extended Header").
 */
export function encodePaxRecords(records: readonly (readonly [string, string])[]): Buffer {
  return Buffer.from(
    records
      .map(([key, value]) => {
        const rest = Buffer.byteLength(` ${key}=${value}\n`);
        let length = rest + String(rest).length;
        if (String(length).length > String(rest).length) length++; // adding digits added a digit
        return `${length} ${key}=${value}\n`;
      })
      .join(''),
    'utf8',
  );
}

/** Parses pax records; a later record for a keyword replaces an earlier one. Throws IntegrityError. */
export function decodePaxRecords(body: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let pos = 0;
  while (pos < body.length && body[pos] !== 0) {
    const space = body.indexOf(0x20, pos);
    const digits = space < 0 ? '' : body.toString('latin1', pos, space);
    const end = pos + Number(digits);
    if (!/^[1-9][0-9]*$/.test(digits) || end > body.length || body[end - 1] !== 0x0a) throw new IntegrityError('tar: malformed pax extended header record');
    const record = body.toString('utf8', space + 1, end - 1);
    const eq = record.indexOf('=');
    if (eq <= 0) throw new IntegrityError('tar: malformed pax extended header record');
    records.set(record.slice(0, eq), record.slice(eq + 1));
    pos = end;
  }
  return records;
}
