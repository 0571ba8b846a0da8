import type { Readable } from 'node:stream';

/**
 * A flat object store holding one walts archive (S3, a directory, or memory for tests).
 *
 * Keys are relative, use '/' and never start with '/', contain `..`, or end in `.meta.json`
 * (the directory store keeps object metadata there). Metadata keys are lower-case `[a-z0-9-]`,
 * values printable ASCII: what S3 user metadata carries without encoding surprises.
 *
 * Every implementation runs the shared contract suite in `test/contract/storage.ts`.
 */
export interface Storage {
  /** Human-readable location for messages, without credentials. */
  readonly description: string;

  /**
   * Whether `put(..., { ifAbsent: true })` is enforced by the store itself:
   * - 'enforced': a second create of the same key always fails with ObjectExistsError;
   * - 'unverified': the request carries the condition (S3 If-None-Match: *) but the service may
   *   ignore it; callers must not rely on it alone (see `probeConditionalCreate`).
   */
  readonly conditionalCreate: 'enforced' | 'unverified';

  /**
   * Stores `body` at `key`. Atomic: readers see the whole object or none of it. Resolves only when the
   * store has acknowledged the object durably (S3 2xx; fs after fsync of file and directory).
   * With `ifAbsent`, MUST reject with ObjectExistsError if `key` exists (subject to `conditionalCreate`).
   * A Buffer body can be re-sent on retry; a stream cannot, so stream puts are not retried.
   */
  put(key: string, body: Buffer | Readable, options?: PutOptions): Promise<void>;

  /** Opens `key`. MUST reject with NotFoundError when absent, and only then. */
  get(key: string, options?: { signal?: AbortSignal }): Promise<StoredObject>;

  /** Size and metadata of `key`, or undefined when it does not exist. */
  head(key: string, options?: { signal?: AbortSignal }): Promise<ObjectInfo | undefined>;

  /** Every object whose key starts with `prefix`, in lexicographic key order. Metadata is not filled. */
  list(prefix: string, options?: { signal?: AbortSignal }): AsyncIterable<ObjectInfo>;

  /** Deletes keys; missing keys are not an error. */
  delete(keys: readonly string[], options?: { signal?: AbortSignal }): Promise<void>;

  /**
   * For 'unverified' stores: finds out whether the service honours create-if-absent, using keys
   * under `scratchPrefix` that it removes afterwards.
   */
  probeConditionalCreate?(scratchPrefix: string): Promise<boolean>;

  /** Releases sockets and handles. */
  close(): Promise<void>;
}

export interface PutOptions {
  ifAbsent?: boolean;
  metadata?: Readonly<Record<string, string>>;
  /** Size of a stream body when known in advance (lets S3 use a single PUT). */
  size?: number;
  signal?: AbortSignal;
}

export interface ObjectInfo {
  readonly key: string;
  readonly size: number;
  readonly lastModified?: Date;
  /** User metadata (lower-case keys); empty when the store has none or `list` produced this entry. */
  readonly metadata: Readonly<Record<string, string>>;
}

export interface StoredObject extends ObjectInfo {
  readonly body: Readable;
}

/** Keys must be safe on every store: checked once here instead of in each implementation. */
export function assertValidKey(key: string): void {
  if (
    key === '' ||
    key.startsWith('/') ||
    key.endsWith('/') ||
    key.includes('\0') ||
    key.includes('\\') ||
    key.split('/').some((part) => part === '' || part === '.' || part === '..') ||
    key.endsWith(META_SUFFIX)
  ) {
    throw new RangeError(`invalid storage key ${JSON.stringify(key)}`);
  }
}

/** Suffix of the directory store's metadata side files; reserved so no key can collide with one. */
export const META_SUFFIX = '.meta.json';
