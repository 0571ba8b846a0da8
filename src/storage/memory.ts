import { Readable } from 'node:stream';
import { NotFoundError, ObjectExistsError } from '../errors';
import { readAll } from '../util/streams';
import { assertValidKey, type ObjectInfo, type PutOptions, type Storage, type StoredObject } from './storage';

interface Entry {
  data: Buffer;
  metadata: Record<string, string>;
  lastModified: Date;
}

/** An in-process store for unit tests of logic; passes the same contract suite as the real stores. */
export class MemoryStorage implements Storage {
  readonly description = 'memory';
  readonly conditionalCreate = 'enforced' as const;
  readonly objects = new Map<string, Entry>();

  async put(key: string, body: Buffer | Readable, options: PutOptions = {}): Promise<void> {
    assertValidKey(key);
    const data = Buffer.isBuffer(body) ? Buffer.from(body) : await readAll(body);
    // Checked after the body is read: the last moment before publishing, as S3 does.
    if (options.ifAbsent && this.objects.has(key)) throw new ObjectExistsError(key);
    this.objects.set(key, { data, metadata: { ...(options.metadata ?? {}) }, lastModified: new Date() });
  }

  async get(key: string): Promise<StoredObject> {
    assertValidKey(key);
    const e = this.objects.get(key);
    if (!e) throw new NotFoundError(`${key} not found in ${this.description}`);
    return { ...this.info(key, e), body: Readable.from([e.data]) };
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    assertValidKey(key);
    const e = this.objects.get(key);
    return e && this.info(key, e);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const keys = [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort();
    for (const key of keys) {
      const e = this.objects.get(key);
      if (e) yield { key, size: e.data.length, lastModified: e.lastModified, metadata: {} };
    }
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (const k of keys) this.objects.delete(k);
  }

  async close(): Promise<void> {}

  private info(key: string, e: Entry): ObjectInfo {
    return { key, size: e.data.length, lastModified: e.lastModified, metadata: { ...e.metadata } };
  }
}
