/**
 * A small streaming tar for base backups: `packTar` writes POSIX ustar + pax, `fileBody` copies a file
 * that may change while it is read, `parseTar` reads walts', GNU and pax archives back, and
 * `safeRelativePath` is the extractor's path check. Memory stays bounded by the chunk size throughout.
 */
import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { IntegrityError } from '../errors';
import { BLOCK_SIZE, decodePaxRecords, decodeUstarBlock, isZeroBlock, tarHeader, tarPadding, TAR_END, type TarEntryHeader, type UstarBlock } from './tarHeader';

export { BLOCK_SIZE, MAX_OCTAL_11, TAR_END, tarHeader, tarPadding, type TarEntryHeader, type TarEntryType } from './tarHeader';

/** pax / GNU long-name entries hold names, not data; anything bigger than this is not an archive of ours. */
const MAX_META_SIZE = 1 << 20;

// ---------------------------------------------------------------------------------------------------
// Writer

/** One entry to pack. `body` yields exactly `header.size` bytes (omit it when the size is 0). */
export interface TarInput {
  header: TarEntryHeader;
  body?: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

/**
 * Streams an archive: for each entry its header block(s), its body as given (chunks pass through
 * uncopied) and padding, then the two end blocks. Throws RangeError if a body's length differs from
 * its header's size (use `fileBody` for files that change while read). Wrap in `Readable.from` to pipe.
 */
export async function* packTar(entries: AsyncIterable<TarInput> | Iterable<TarInput>): AsyncGenerator<Buffer, void, undefined> {
  for await (const { header, body } of entries) {
    yield tarHeader(header);
    let written = 0;
    for await (const chunk of body ?? []) {
      written += chunk.length;
      if (written > header.size) break;
      yield toBuffer(chunk);
    }
    if (written !== header.size) {
      const got = written > header.size ? `more than ${header.size}` : String(written);
      throw new RangeError(`tar entry ${JSON.stringify(header.path)}: the body has ${got} bytes, the header says ${header.size}`);
    }
    const padding = tarPadding(header.size);
    if (padding.length > 0) yield padding;
  }
  yield Buffer.from(TAR_END);
}

/** What `fileBody` copied. */
export interface FileBodyResult {
  /** Hex SHA-256 of the bytes emitted: exactly `declaredSize` bytes, zero padding included. */
  sha256: string;
  /** Bytes that came from the file; less than `declaredSize` when it shrank. */
  bytesFromFile: number;
  /** The file ended before `declaredSize`: the rest was emitted as zeros. */
  shrank: boolean;
  /** The file had data past `declaredSize`: it was left out. */
  grew: boolean;
}

export interface FileBodyOptions {
  /** Read size, and the largest chunk yielded. Default 1 MiB. */
  chunkSize?: number;
  /** Called once with the result after the last byte was yielded (also the generator's return value). */
  onDone?: (result: FileBodyResult) => void;
}

/**
 * Yields exactly `declaredSize` bytes of an open file (the size its tar header already announced),
 * reading at explicit positions in `chunkSize` pieces. PostgreSQL files change during an online
 * backup and WAL replay repairs them, so a file that shrank is padded with zeros and one that grew is
 * cut at `declaredSize` (reliability rule 24). Once the file ends, it is not read again. Read errors
 * propagate. The caller owns (and closes) the handle.
 */
export async function* fileBody(handle: FileHandle, declaredSize: number, options: FileBodyOptions = {}): AsyncGenerator<Buffer, FileBodyResult, undefined> {
  const chunkSize = options.chunkSize ?? 1 << 20;
  if (!Number.isSafeInteger(declaredSize) || declaredSize < 0) throw new RangeError(`fileBody: bad size ${declaredSize}`);
  if (!Number.isSafeInteger(chunkSize) || chunkSize < 1) throw new RangeError(`fileBody: bad chunk size ${chunkSize}`);
  const hash = createHash('sha256');
  let position = 0;
  let fromFile = 0;
  let ended = false;
  while (position < declaredSize) {
    const want = Math.min(chunkSize, declaredSize - position);
    let chunk: Buffer;
    if (ended) {
      chunk = Buffer.alloc(want);
    } else {
      // A fresh buffer per read: the consumer may still hold the previous chunk.
      const buf = Buffer.allocUnsafe(want);
      const { bytesRead } = await handle.read(buf, 0, want, position);
      if (bytesRead === 0) {
        ended = true;
        chunk = buf.fill(0);
      } else {
        chunk = buf.subarray(0, bytesRead);
        fromFile += bytesRead;
      }
    }
    hash.update(chunk);
    position += chunk.length;
    yield chunk;
  }
  const grew = !ended && (await handle.read(Buffer.alloc(1), 0, 1, declaredSize)).bytesRead > 0;
  const result: FileBodyResult = { sha256: hash.digest('hex'), bytesFromFile: fromFile, shrank: ended, grew };
  options.onDone?.(result);
  return result;
}

function toBuffer(chunk: Uint8Array): Buffer {
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

// ---------------------------------------------------------------------------------------------------
// Reader
//
// How it works: `Input` hands out pieces of the source's chunks without copying (only a header that
// straddles chunks is assembled into 512 bytes). `parseTar` reads one header block; meta entries
// ('x' pax, 'g' global pax, 'L'/'K' GNU long name/link) are read whole (<= 1 MiB) and applied to the
// next real entry. A real entry is yielded with an `EntryBody` that pulls its bytes from `Input`; when
// the consumer asks for the next entry, whatever it left unread is skipped, with the padding. Two zero
// blocks end the archive; the rest of the source must be zeros (GNU tar pads to 10 KiB records) and is
// drained, so that an upstream integrity check (decryption, decompression) still runs to its end.

/** One entry. Read `body` before asking for the next entry; unread bytes are skipped then. */
export interface TarEntry {
  header: TarEntryHeader;
  body: AsyncIterable<Buffer>;
}

/**
 * Parses a tar stream of regular files, directories and symlinks (ustar, pax, GNU). Throws
 * IntegrityError on a bad checksum or magic, malformed pax records, an archive that ends early or
 * without its end blocks, data after them, and on entry types a base backup never holds (hard links,
 * devices, FIFOs, sparse or unknown types). Paths are returned as stored: check them with
 * `safeRelativePath`. Breaking out of the loop early closes the source.
 */
export async function* parseTar(source: AsyncIterable<Uint8Array>): AsyncGenerator<TarEntry, void, undefined> {
  const input = new Input(source);
  try {
    let pax = new Map<string, string>();
    let longName: string | undefined;
    let longLink: string | undefined;
    for (;;) {
      const block = await input.exactly(BLOCK_SIZE);
      if (block.length < BLOCK_SIZE) throw truncated(block.length === 0 ? 'without its end-of-archive blocks' : 'inside a header');
      if (isZeroBlock(block)) {
        const second = await input.exactly(BLOCK_SIZE);
        if (second.length < BLOCK_SIZE) throw truncated('after one of its two end-of-archive blocks');
        if (!isZeroBlock(second)) throw new IntegrityError('tar: a zero block inside the archive (corrupt or concatenated archive)');
        if (pax.size > 0 || longName !== undefined || longLink !== undefined) throw new IntegrityError('tar: an extended header is not followed by an entry');
        await input.drainZeros();
        return;
      }
      const raw = decodeUstarBlock(block);
      const meta = META_TYPES.has(raw.typeflag) ? await readMeta(input, raw.size, raw.typeflag) : undefined;
      if (raw.typeflag === 'x') for (const [key, value] of decodePaxRecords(meta!)) pax.set(key, value);
      else if (raw.typeflag === 'L') longName = cString(meta!);
      else if (raw.typeflag === 'K') longLink = cString(meta!);
      if (meta) continue; // 'g' (global pax) is read and ignored
      const header = entryHeader(raw, pax, longName, longLink);
      pax = new Map();
      longName = longLink = undefined;
      const body = new EntryBody(input, header.size, header.path);
      yield { header, body };
      await body.finish();
    }
  } finally {
    await input.close();
  }
}

const META_TYPES = new Set(['x', 'g', 'L', 'K']);
/** Type flags walts refuses, with why (POSIX ustar typeflag values; 'S' etc. are GNU extensions). */
const REFUSED_TYPES: Record<string, string> = {
  '1': 'a hard link',
  '3': 'a character device',
  '4': 'a block device',
  '6': 'a FIFO',
  '7': 'a contiguous file',
  S: 'a GNU sparse file',
};

/** Applies pax records, then GNU long names, over the ustar fields, and maps the type. */
function entryHeader(raw: UstarBlock, pax: Map<string, string>, longName?: string, longLink?: string): TarEntryHeader {
  // POSIX: an empty pax value deletes the keyword, so the ustar field applies again.
  const record = (key: string): string | undefined => pax.get(key) || undefined;
  let path = record('path') ?? longName ?? raw.name;
  const what = `tar entry ${JSON.stringify(path)}`;
  if ([...pax.keys()].some((k) => k.startsWith('GNU.sparse.'))) throw new IntegrityError(`${what} is a GNU sparse file: not supported`);
  const size = record('size') === undefined ? raw.size : paxNumber(record('size')!, /^[0-9]+$/, `${what}: pax size`);
  const mtime = record('mtime') === undefined ? raw.mtime : Math.floor(paxNumber(record('mtime')!, /^-?[0-9]+(\.[0-9]*)?$/, `${what}: pax mtime`));
  let type: TarEntryHeader['type'];
  if (raw.typeflag === '5' || (raw.typeflag === '\0' && path.endsWith('/'))) type = 'directory';
  else if (raw.typeflag === '0' || raw.typeflag === '\0') type = 'file';
  else if (raw.typeflag === '2') type = 'symlink';
  else throw new IntegrityError(`${what} is ${REFUSED_TYPES[raw.typeflag] ?? `of unknown type ${JSON.stringify(raw.typeflag)}`}: base backups hold only files, directories and symlinks`);
  if (path === '') throw new IntegrityError('tar: an entry has an empty name');
  if (type === 'directory' && !path.endsWith('/')) path += '/';
  const header: TarEntryHeader = { path, type, size, mode: raw.mode, mtime };
  if (type === 'symlink') {
    header.linkname = record('linkpath') ?? longLink ?? raw.linkname;
    if (header.linkname === '') throw new IntegrityError(`${what} is a symlink without a target`);
  }
  return header;
}

function paxNumber(value: string, pattern: RegExp, what: string): number {
  const n = Number(value);
  if (!pattern.test(value) || !Number.isSafeInteger(Math.floor(n))) throw new IntegrityError(`${what} ${JSON.stringify(value)} is not valid`);
  return n;
}

async function readMeta(input: Input, size: number, typeflag: string): Promise<Buffer> {
  if (size > MAX_META_SIZE) throw new IntegrityError(`tar: a '${typeflag}' extended header of ${size} bytes (limit ${MAX_META_SIZE})`);
  const body = await input.exactly(size);
  const padding = await input.exactly(tarPadding(size).length);
  if (body.length < size || padding.length < tarPadding(size).length) throw truncated(`inside a '${typeflag}' extended header`);
  return body;
}

/** GNU long names are NUL-terminated inside their body. */
function cString(b: Buffer): string {
  const end = b.indexOf(0);
  return b.toString('utf8', 0, end < 0 ? b.length : end);
}

function truncated(where: string): IntegrityError {
  return new IntegrityError(`tar: archive is truncated: it ends ${where}`);
}

/** The body of one entry, pulled from the shared input. Iterable once. */
class EntryBody implements AsyncIterable<Buffer> {
  #remaining: number;
  #started = false;
  #skipped = false;
  constructor(
    private readonly input: Input,
    private readonly size: number,
    private readonly path: string,
  ) {
    this.#remaining = size;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer, void, undefined> {
    if (this.#started) throw new Error(`tar entry ${JSON.stringify(this.path)}: the body can be read only once`);
    this.#started = true;
    for (;;) {
      if (this.#skipped) throw new Error(`tar entry ${JSON.stringify(this.path)}: body read after the parser moved to the next entry`);
      if (this.#remaining === 0) return;
      const chunk = await this.#next();
      yield chunk;
    }
  }

  /** Called by the parser before the next header: skips unread bytes and the padding. */
  async finish(): Promise<void> {
    if (this.#remaining > 0) this.#skipped = true;
    while (this.#remaining > 0) await this.#next();
    const padding = tarPadding(this.size).length;
    if ((await this.input.exactly(padding)).length < padding) throw truncated(`inside the padding of ${JSON.stringify(this.path)}`);
  }

  async #next(): Promise<Buffer> {
    const chunk = await this.input.take(this.#remaining);
    if (chunk.length === 0) throw truncated(`inside ${JSON.stringify(this.path)} (${this.size - this.#remaining} of ${this.size} bytes)`);
    this.#remaining -= chunk.length;
    return chunk;
  }
}

/** The source as a byte queue holding at most one source chunk. Not reentrant: one read at a time. */
class Input {
  readonly #source: AsyncIterator<Uint8Array>;
  #chunk: Buffer = Buffer.alloc(0);
  #done = false;
  #busy = false;
  constructor(source: AsyncIterable<Uint8Array>) {
    this.#source = source[Symbol.asyncIterator]();
  }

  /** Up to `max` bytes, without copying; empty only at the end of the source. */
  async take(max: number): Promise<Buffer> {
    if (this.#busy) throw new Error('tar: concurrent reads (read each entry body before asking for the next entry)');
    this.#busy = true;
    try {
      while (this.#chunk.length === 0 && !this.#done) {
        const next = await this.#source.next();
        if (next.done) this.#done = true;
        else this.#chunk = toBuffer(next.value);
      }
      const out = this.#chunk.subarray(0, max);
      this.#chunk = this.#chunk.subarray(out.length);
      return out;
    } finally {
      this.#busy = false;
    }
  }

  /** Exactly `n` bytes (n is small: a block or a meta entry), or fewer if the source ends first. */
  async exactly(n: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let got = 0;
    while (got < n) {
      const part = await this.take(n - got);
      if (part.length === 0) break;
      parts.push(part);
      got += part.length;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, got);
  }

  /** Reads the source to its end, which must be all zeros. */
  async drainZeros(): Promise<void> {
    for (let part = await this.take(1 << 20); part.length > 0; part = await this.take(1 << 20)) {
      if (!isZeroBlock(part)) throw new IntegrityError('tar: data after the end-of-archive blocks');
    }
  }

  async close(): Promise<void> {
    if (!this.#done) await this.#source.return?.();
  }
}

// ---------------------------------------------------------------------------------------------------
// Path safety

/**
 * The entry name as a safe relative path: `./a//b/` → `a/b`. Undefined for anything an extractor must
 * refuse: empty, absolute, a `..` component, a NUL byte or a backslash (a separator on Windows).
 * `.` and `./` (the root entry `tar -C dir -c .` writes) normalise to nothing and are refused too.
 * Checks the name only; where symlinks may point is the caller's policy.
 */
export function safeRelativePath(name: string): string | undefined {
  if (name === '' || name.startsWith('/') || name.includes('\0') || name.includes('\\')) return undefined;
  const parts = name.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.length === 0 || parts.includes('..')) return undefined;
  return parts.join('/');
}
