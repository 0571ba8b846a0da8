/**
 * The metadata walts records with every object it writes (S3 user metadata, or the directory
 * store's side file). The plaintext digest, not the ciphertext, decides duplicates and proves
 * integrity; the stored size proves the object was published whole.
 */
import type { ObjectInfo } from '../storage/storage';

export const META = {
  sha256: 'walts-sha256',
  size: 'walts-size',
  storedSize: 'walts-stored-size',
  systemId: 'walts-system-id',
} as const;

export interface PlainFacts {
  readonly sha256: string;
  readonly size: number;
}

export function objectMetadata(plain: PlainFacts, storedSize: number, systemId?: string): Record<string, string> {
  const meta: Record<string, string> = {
    [META.sha256]: plain.sha256,
    [META.size]: String(plain.size),
    [META.storedSize]: String(storedSize),
  };
  if (systemId) meta[META.systemId] = systemId;
  return meta;
}

/**
 * What the object's metadata says about its plain content, but only if the object is complete:
 * its size equals the stored size recorded with it. Undefined for objects walts cannot vouch for
 * (truncated, or written by hand without metadata).
 */
export function completeFacts(info: ObjectInfo): PlainFacts | undefined {
  const sha256 = info.metadata[META.sha256];
  const size = Number(info.metadata[META.size]);
  const storedSize = Number(info.metadata[META.storedSize]);
  if (!sha256 || !/^[0-9a-f]{64}$/.test(sha256) || !Number.isSafeInteger(size) || !Number.isSafeInteger(storedSize)) return undefined;
  if (storedSize !== info.size) return undefined;
  return { sha256, size };
}
