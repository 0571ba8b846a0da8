/**
 * LZ4 block format (https://github.com/lz4/lz4/blob/dev/doc/lz4_Block_format.md) in plain
 * JavaScript: the codec that always loads, whatever the install did (no native addon, no install
 * script, any Node.js, any libc). The frame around the blocks stays ours (lz4FrameEncoder.ts,
 * lz4Frame.ts), so what this writes is the same format `lz4 -d` reads.
 *
 * The compressor is LZ4's fast greedy one: a 64 Ki-entry hash table of 4-byte sequences, the first
 * match found is taken and extended both ways, and the step grows on incompressible stretches
 * (LZ4's acceleration). Its blocks differ in bytes from the C library's (another match may be
 * found), never in format. The decompressor checks every length and offset against both buffers:
 * a corrupt or hostile block returns -1, it never reads or writes outside them.
 */

const MINMATCH = 4;
/** The last match must start at least 12 bytes before the end of the block (spec, "end of block"). */
const MFLIMIT = 12;
/** The last 5 bytes are always literals. */
const LASTLITERALS = 5;
const MAX_DISTANCE = 65535;
const HASH_LOG = 16;
/** LZ4's skip strength: the step grows by one every 2^6 bytes without a match. */
const SKIP_TRIGGER = 6;
/** Copies shorter than this are done byte by byte: cheaper than a call into `set`/`copyWithin`. */
const SHORT_COPY = 32;

/** Positions + 1 (0: empty) by hash; one per thread, cleared per block. */
const table = new Int32Array(1 << HASH_LOG);

/** The most a block of `size` plain bytes can take (LZ4_compressBound). */
export function encodeBoundJs(size: number): number {
  return size + Math.floor(size / 255) + 16;
}

const read32 = (b: Uint8Array, i: number): number => b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24);
const hash = (seq: number): number => Math.imul(seq, 2654435761) >>> (32 - HASH_LOG);

/** Compresses `src` into `dst`: the compressed size, or 0 when it does not fit (as LZ4_compress_default). */
export function encodeBlockJs(src: Uint8Array, dst: Uint8Array): number {
  const n = src.length;
  const dEnd = dst.length;
  let anchor = 0;
  let d = 0;
  if (n >= MFLIMIT + 1) {
    table.fill(0);
    const mflimit = n - MFLIMIT;
    const matchlimit = n - LASTLITERALS;
    let s = 0;
    let searchMatchNb = 1 << SKIP_TRIGGER;
    while (s < mflimit) {
      const seq = read32(src, s);
      const h = hash(seq);
      let ref = table[h]! - 1;
      table[h] = s + 1;
      if (ref < 0 || s - ref > MAX_DISTANCE || read32(src, ref) !== seq) {
        s += searchMatchNb++ >> SKIP_TRIGGER;
        continue;
      }
      searchMatchNb = 1 << SKIP_TRIGGER;
      // Extend backwards over literals not yet emitted, then forwards up to the literal tail.
      while (s > anchor && ref > 0 && src[s - 1] === src[ref - 1]) {
        s--;
        ref--;
      }
      let end = s + MINMATCH;
      let r = ref + MINMATCH;
      while (end + 4 <= matchlimit && read32(src, end) === read32(src, r)) {
        end += 4;
        r += 4;
      }
      while (end < matchlimit && src[end] === src[r]) {
        end++;
        r++;
      }
      const lit = s - anchor;
      const ml = end - s - MINMATCH;
      // token + literal length bytes + literals + offset + match length bytes
      if (d + 1 + ((lit + 240) / 255 | 0) + lit + 2 + ((ml + 240) / 255 | 0) > dEnd) return 0;
      const token = d++;
      d = writeLength(dst, d, lit);
      d = copyBytes(src, anchor, dst, d, lit);
      const offset = s - ref;
      dst[d++] = offset & 0xff;
      dst[d++] = offset >>> 8;
      dst[token] = ((lit < 15 ? lit : 15) << 4) | (ml < 15 ? ml : 15);
      if (ml >= 15) d = writeExtra(dst, d, ml - 15);
      anchor = s = end;
      // Index a position inside the match too, as LZ4 does, so the next search finds more.
      if (s - 2 > 0 && s - 2 < mflimit) table[hash(read32(src, s - 2))] = s - 2 + 1;
    }
  }
  const lit = n - anchor;
  if (d + 1 + ((lit + 240) / 255 | 0) + lit > dEnd) return 0;
  const token = d++;
  d = writeLength(dst, d, lit);
  dst[token] = (lit < 15 ? lit : 15) << 4;
  return copyBytes(src, anchor, dst, d, lit);
}

/** The extra bytes of a literal length (the token's nibble is set by the caller). */
function writeLength(dst: Uint8Array, d: number, lit: number): number {
  return lit >= 15 ? writeExtra(dst, d, lit - 15) : d;
}

function writeExtra(dst: Uint8Array, d: number, rest: number): number {
  while (rest >= 255) {
    dst[d++] = 255;
    rest -= 255;
  }
  dst[d++] = rest;
  return d;
}

function copyBytes(src: Uint8Array, s: number, dst: Uint8Array, d: number, n: number): number {
  if (n < SHORT_COPY) for (let i = 0; i < n; i++) dst[d + i] = src[s + i]!;
  else dst.set(src.subarray(s, s + n), d);
  return d + n;
}

/**
 * Decompresses the block `src` into `dst`: the plain size, or -1 when the block is malformed or
 * its plain bytes do not fit in `dst` (as LZ4_decompress_safe).
 */
export function decodeBlockJs(src: Uint8Array, dst: Uint8Array): number {
  const sEnd = src.length;
  const dEnd = dst.length;
  let s = 0;
  let d = 0;
  if (sEnd === 0) return -1;
  for (;;) {
    const token = src[s++]!;
    let lit = token >>> 4;
    if (lit === 15) {
      let b: number;
      do {
        if (s >= sEnd) return -1;
        b = src[s++]!;
        lit += b;
      } while (b === 255);
    }
    if (lit > sEnd - s || lit > dEnd - d) return -1;
    d = copyBytes(src, s, dst, d, lit);
    s += lit;
    if (s === sEnd) return d; // the last sequence has literals only
    if (sEnd - s < 2) return -1;
    const offset = src[s]! | (src[s + 1]! << 8);
    s += 2;
    if (offset === 0 || offset > d) return -1;
    let len = token & 15;
    if (len === 15) {
      let b: number;
      do {
        if (s >= sEnd) return -1;
        b = src[s++]!;
        len += b;
      } while (b === 255);
    }
    len += MINMATCH;
    if (len > dEnd - d) return -1;
    const end = d + len;
    let m = d - offset;
    if (len < SHORT_COPY) {
      while (d < end) dst[d++] = dst[m++]!;
    } else {
      // An offset shorter than the length repeats the pattern: copy what exists, which doubles it.
      while (d < end) {
        const n = Math.min(d - m, end - d);
        dst.copyWithin(d, m, m + n);
        d += n;
      }
    }
  }
}
