import type { Duplex } from 'node:stream';
import { IntegrityError } from '../errors';
import type { Codec, DecodeOptions, EncodeOptions } from './codec';
import { lz4Codec } from './lz4';
import type { CodecSpec } from './make';

/**
 * The codecs walts knows, by key suffix, and the chain it writes with today. Reading never depends
 * on today's configuration: the suffixes of an object's key say how to decode it.
 */
export class CodecSet {
  readonly #byName: ReadonlyMap<string, Codec>;

  constructor(
    /** Applied in this order when writing. */
    readonly writeChain: readonly Codec[],
    /** Every codec available for reading (for `pgp`: with or without private keys). */
    readable: readonly Codec[],
    /** The settings it was made from (`makeCodecs`), so a worker thread can make the same set. */
    readonly spec?: CodecSpec,
  ) {
    this.#byName = new Map([...readable, ...writeChain].map((c) => [c.name, c]));
  }

  /** `.lz4.pgp`-style suffix of what `encoders()` produces. */
  get writeSuffix(): string {
    return this.writeChain.map((c) => `.${c.name}`).join('');
  }

  encoders(options?: EncodeOptions): Duplex[] {
    // Only the first encoder sees the plain bytes the hint is about.
    return this.writeChain.map((c, i) => c.encoder(i === 0 ? options : undefined));
  }

  /** Decoders for a suffix list as returned by `splitCodecSuffix`, outermost first. */
  decoders(codecNames: readonly string[], options?: DecodeOptions): Duplex[] {
    const innermost = codecNames.length - 1;
    return [...codecNames].reverse().map((name, i) => {
      const codec = this.#byName.get(name);
      if (!codec) throw new IntegrityError(`unknown codec suffix .${name}`);
      // Only the last decoder's output reaches the caller, who releases it; the others feed a decoder.
      return codec.decoder(i === innermost || !options?.lendOutput ? options : { ...options, lendOutput: false });
    });
  }
}

/** Suffixes walts may put on a key, in every order it may write them. */
export const CODEC_SUFFIXES = ['lz4', 'zst', 'pgp'] as const;

/**
 * Splits `name.lz4.pgp` into `name` and `['lz4', 'pgp']`. Only trailing known suffixes count, so
 * `00000002.history` keeps its own extension.
 */
export function splitCodecSuffix(keyBase: string): { base: string; codecs: string[] } {
  const codecs: string[] = [];
  let base = keyBase;
  for (;;) {
    const dot = base.lastIndexOf('.');
    const ext = dot < 0 ? '' : base.slice(dot + 1);
    if (!(CODEC_SUFFIXES as readonly string[]).includes(ext) || codecs.includes(ext)) break;
    // One compression per object: `x.zst.lz4` is not a key walts writes, so `.zst` stays in its base.
    if (ext !== 'pgp' && codecs.some((c) => c !== 'pgp')) break;
    codecs.unshift(ext);
    base = base.slice(0, dot);
  }
  return { base, codecs };
}

export { lz4Codec };
