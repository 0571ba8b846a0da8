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
  encoder(): Duplex;
  /** A fresh transform from encoded to plain bytes; errors on corrupt or unauthenticated input. */
  decoder(): Duplex;
}
