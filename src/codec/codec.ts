import type { Duplex } from 'node:stream';

/**
 * One stage of the object encoding: compression or encryption. An object's key ends with the
 * suffixes of the codecs applied, in the order applied (`X.lz4.pgp` = LZ4, then OpenPGP), so any
 * object is decoded from its key alone, whatever walts is configured to write today.
 */
export interface Codec {
  /** Key suffix without the dot: `lz4`, `pgp`. */
  readonly name: string;
  /** A fresh transform from plain to encoded bytes. */
  encoder(options?: EncodeOptions): Duplex;
  /** A fresh transform from encoded to plain bytes; errors on corrupt or unauthenticated input. */
  decoder(options?: DecodeOptions): Duplex;
}

export interface EncodeOptions {
  /**
   * How many bytes the encoder will be given, when known before the first one (a WAL segment's
   * file size): an encoder may then write its whole output into one buffer. Only a hint: more or
   * fewer bytes must still encode correctly. `CodecSet.encoders` passes it to the first encoder only.
   */
  readonly plainSize?: number;
}

export interface DecodeOptions {
  /**
   * Release plaintext before an integrity check that only comes at the end of the stream (OpenPGP's
   * MDC). Off by default: a WAL file is held until proven. On for multi-GiB backup volumes, whose
   * every file is checked against its own SHA-256 and whose end-of-stream check still fails the
   * restore before it is usable (pg_control is put in place last).
   */
  readonly unauthenticatedStream?: boolean;
  /**
   * The caller calls `releaseChunk` (blockPool.ts) on every output chunk once nothing reads it any
   * more, so a decoder may lend reused buffers instead of fresh ones. `CodecSet.decoders` passes it
   * to the innermost decoder only (the one whose output is the plain bytes); codecs may ignore it.
   */
  readonly lendOutput?: boolean;
  /**
   * The caller holds the plain bytes to a SHA-256 and size recorded apart from this encoding
   * (decode.ts `expected`, checked before anything is used), so a decoder may skip a checksum that
   * covers only the plain bytes and proves less (LZ4's xxHash32 content checksum). Never a check
   * of the encoding's own structure, and never an authentication check (OpenPGP's MDC).
   */
  readonly plainVerified?: boolean;
}
