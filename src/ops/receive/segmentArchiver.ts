/**
 * What wal-receive does with the WAL of one stream, apart from the protocol: stage it segment by
 * segment, archive each completed segment through the one push path (`pushFile`: same key, metadata
 * and duplicate rules as archive_command, so identical content pushed both ways is stored once), keep
 * the segment in progress in the store as `receive/<slot>/<segment>.partial<codecs>`
 * (docs/storage-format.md, "Streamed WAL in progress"), and say how far the store holds the WAL.
 *
 * `durable` is the only position the receiver may report to the server as flushed: the end of the
 * last segment the store acknowledged (and whose .partial is gone), or the end of the .partial object
 * last written. A replication slot moves to what is reported, and its WAL is gone once it has moved,
 * so nothing merely received or staged ever counts.
 *
 * Rules kept here:
 * - a .partial is never rewritten shorter than what the store holds (after a restart the segment is
 *   received again from its start: an early rewrite would take back WAL the slot already let go);
 * - its first page must be the segment's long header, of the cluster the archive belongs to (checked
 *   before the first byte of it is written; the cluster record is created from it when the archive has none);
 * - a .partial is deleted only after the complete segment is acknowledged in wal/.
 */
import { promises as fsp } from 'node:fs';
import { basename } from 'node:path';
import { ensureClusterRecord, readClusterRecord } from '../../archive/cluster';
import { encodeTo } from '../../archive/encode';
import { parseReceivedPartialKey, RECEIVE_ROOT, receivedPartialKey } from '../../archive/layout';
import { completeFacts, objectMetadata } from '../../archive/objectMeta';
import { findWalVariants } from '../../archive/walObjects';
import { LZ4_BLOCK_MAX } from '../../codec/lz4FrameEncoder';
import type { Deps } from '../../deps';
import { IntegrityError, ProtocolError } from '../../errors';
import { LONG_HEADER_SIZE, parseWalSegmentHeader } from '../../postgres/walHeader';
import { formatLsn, lsnToSegment, parseWalFileName, segmentName, type Lsn } from '../../postgres/walName';
import { readSteps } from '../../util/readSteps';
import { spool } from '../../util/spool';
import { pushFile, PushSession } from '../walPush';
import { StagedSegment } from './staging';

export interface ArchiverOptions {
  readonly slot: string;
  readonly segmentSize: number;
  /** IDENTIFY_SYSTEM's system identifier: the one the archive must belong to. */
  readonly systemId: string;
  /** This process's staging directory (staging.ts). */
  readonly dir: string;
}

/** The .partial objects of one segment in the store (any codecs), and the largest plain size among the complete ones. */
interface StoredPartial {
  keys: string[];
  size: number | undefined;
}

interface CurrentSegment {
  readonly staged: StagedSegment;
  readonly start: Lsn;
  /** Its header was checked (before its first .partial). */
  checked: boolean;
}

export class SegmentArchiver {
  /** See the module comment; 0 until something of this stream is durable. */
  durable: Lsn = 0n;
  /** End of the WAL staged so far (what the receiver reports as written). */
  written: Lsn = 0n;
  #timeline = 0;
  #segment: CurrentSegment | undefined;
  #partials = new Map<string, StoredPartial>();
  #clusterChecked = false;
  #session: PushSession;

  private constructor(
    private readonly deps: Deps,
    private readonly opts: ArchiverOptions,
  ) {
    this.#session = new PushSession(deps);
  }

  /** Learns which .partial objects of this slot the store holds (written by an earlier run). */
  static async open(deps: Deps, opts: ArchiverOptions): Promise<SegmentArchiver> {
    const a = new SegmentArchiver(deps, opts);
    for await (const info of deps.storage.list(`${RECEIVE_ROOT}/${opts.slot}/`)) {
      const parsed = parseReceivedPartialKey(info.key);
      if (!parsed || parsed.slot !== opts.slot) continue;
      const known = a.#partials.get(parsed.segment) ?? { keys: [], size: undefined };
      known.keys.push(info.key);
      a.#partials.set(parsed.segment, known);
    }
    return a;
  }

  /** The .partial objects this archiver knows of, by segment (for logs and tests). */
  get storedPartials(): ReadonlyMap<string, { readonly keys: readonly string[] }> {
    return this.#partials;
  }

  /**
   * Removes .partial objects of segments before `start` whose complete segment is archived (a
   * receiver killed between archiving a segment and deleting its .partial). Others are kept: the
   * last segment of a finished timeline never completes, and its .partial is the only copy.
   */
  async removeSuperseded(start: Lsn, timeline: number): Promise<string[]> {
    const first = segmentName(lsnToSegment(start, timeline, this.opts.segmentSize), this.opts.segmentSize);
    const removed: string[] = [];
    for (const [segment, known] of this.#partials) {
      if (segment.slice(8) >= first.slice(8)) continue; // same or later position, whatever the timeline
      const name = parseWalFileName(segment);
      if (!name) continue;
      const variants = await findWalVariants(this.deps.storage, name);
      if (!variants.some((v) => v.facts)) continue;
      await this.deps.storage.delete(known.keys);
      this.#partials.delete(segment);
      removed.push(...known.keys);
    }
    return removed;
  }

  /** A new stream starts at `start` (a segment boundary) on `timeline`: staging starts afresh. */
  async begin(timeline: number, start: Lsn): Promise<void> {
    if (start % BigInt(this.opts.segmentSize) !== 0n) throw new RangeError(`stream start ${formatLsn(start)} is not at a segment boundary`);
    await this.discard();
    this.#timeline = timeline;
    this.written = start;
    this.durable = 0n;
  }

  /** WAL from the stream, contiguous with what came before (WalStream checks that); completed segments are archived. */
  async write(start: Lsn, data: Buffer): Promise<void> {
    if (start !== this.written) throw new ProtocolError(`WAL at ${formatLsn(start)} does not continue the WAL staged up to ${formatLsn(this.written)}`);
    const segSize = BigInt(this.opts.segmentSize);
    let offset = 0;
    while (offset < data.length) {
      const seg = this.#segment ?? (await this.#startSegment(this.written));
      const room = Number(seg.start + segSize - this.written);
      const n = Math.min(room, data.length - offset);
      await seg.staged.append(data.subarray(offset, offset + n));
      offset += n;
      this.written += BigInt(n);
      if (n === room) await this.#completeSegment();
    }
  }

  /**
   * Writes the segment in progress as its .partial object when more is staged than the store holds.
   * True when `durable` moved.
   */
  async flushPartial(): Promise<boolean> {
    const seg = this.#segment;
    if (!seg || seg.staged.size < LONG_HEADER_SIZE) return false;
    const stored = await this.#storedSize(seg.staged.name);
    if (stored !== undefined && seg.staged.size <= stored) return false;
    if (!seg.checked) {
      await this.#checkHeader(seg);
      seg.checked = true;
    }
    const size = seg.staged.size;
    const key = receivedPartialKey(this.opts.slot, seg.staged.name, this.deps.codecs.writeSuffix);
    const handle = await seg.staged.openForRead();
    let spooled;
    try {
      let out: Awaited<ReturnType<typeof spool>> | undefined;
      const { plain } = await encodeTo(this.deps.codecs, readSteps(handle, LZ4_BLOCK_MAX), async (encoded) => {
        out = await spool(encoded);
      }, undefined, { plainSize: size });
      spooled = out;
      if (!spooled || plain.size !== size) throw new Error(`staged ${seg.staged.name} changed while it was encoded (${size} → ${plain.size} bytes)`);
      // Overwritten in place (no create-if-absent): these are the only objects walts rewrites.
      await this.deps.storage.put(key, spooled.body(), { metadata: objectMetadata(plain, spooled.size, this.opts.systemId), size: spooled.size });
    } finally {
      await handle.close();
      await spooled?.cleanup();
    }
    const known = this.#partials.get(seg.staged.name);
    const others = known?.keys.filter((k) => k !== key) ?? [];
    if (others.length > 0) await this.deps.storage.delete(others); // the same segment under other codecs
    this.#partials.set(seg.staged.name, { keys: [key], size });
    this.durable = seg.start + BigInt(size);
    this.deps.log.debug({ wal: seg.staged.name, key, lsn: formatLsn(this.durable), bytes: size }, 'wal-receive: partial segment flushed');
    return true;
  }

  /**
   * The stream's timeline ended (the server switched to a newer one): the segment in progress will
   * never complete on this timeline, so its .partial, written up to the switch point, is kept.
   */
  async endTimeline(): Promise<void> {
    await this.flushPartial();
    await this.discard();
  }

  /** Archives a history file (TIMELINE_HISTORY's content) through the push path. */
  async pushHistory(fileName: string, content: Buffer): Promise<void> {
    const path = `${this.opts.dir}/${basename(fileName)}`;
    await fsp.writeFile(path, content, { mode: 0o600 });
    try {
      const r = await pushFile(this.deps, this.#session, { path, cwd: this.opts.dir, primary: true });
      this.deps.log.info({ wal: r.name, key: r.key, outcome: r.outcome }, 'wal-receive: timeline history archived');
    } finally {
      await fsp.rm(path, { force: true });
    }
  }

  /** Drops what is staged (nothing of it is reported as durable unless the store has it). */
  async discard(): Promise<void> {
    const seg = this.#segment;
    this.#segment = undefined;
    await seg?.staged.discard();
  }

  async #startSegment(start: Lsn): Promise<CurrentSegment> {
    if (start % BigInt(this.opts.segmentSize) !== 0n) throw new RangeError(`a segment cannot start at ${formatLsn(start)}`);
    const name = segmentName(lsnToSegment(start, this.#timeline, this.opts.segmentSize), this.opts.segmentSize);
    const seg = { staged: await StagedSegment.create(this.opts.dir, name), start, checked: false };
    this.#segment = seg;
    return seg;
  }

  async #completeSegment(): Promise<void> {
    const seg = this.#segment!;
    if (!seg.checked) {
      await this.#checkHeader(seg); // pushFile checks it too; this also settles the cluster record first
      seg.checked = true;
    }
    this.#segment = undefined;
    const path = await seg.staged.complete(this.opts.dir);
    try {
      const r = await pushFile(this.deps, this.#session, { path, cwd: this.opts.dir, primary: true });
      const stale = this.#partials.get(seg.staged.name)?.keys ?? [];
      if (stale.length > 0) await this.deps.storage.delete(stale);
      this.#partials.delete(seg.staged.name);
      this.durable = seg.start + BigInt(this.opts.segmentSize);
      this.deps.log.info({ wal: r.name, key: r.key, outcome: r.outcome, lsn: formatLsn(this.durable), bytes_out: r.storedBytes }, 'wal-receive: segment archived');
    } finally {
      await fsp.rm(path, { force: true });
    }
  }

  /** The largest plain size among the complete .partial objects of `segment` in the store (read once per segment). */
  async #storedSize(segment: string): Promise<number | undefined> {
    const known = this.#partials.get(segment);
    if (!known) return undefined;
    if (known.size === undefined) {
      let size = 0;
      for (const key of known.keys) {
        const info = await this.deps.storage.head(key);
        const facts = info && completeFacts(info);
        if (facts) size = Math.max(size, facts.size);
      }
      known.size = size;
    }
    return known.size;
  }

  /** The staged segment's long header names this cluster and this segment; the archive belongs to this cluster. */
  async #checkHeader(seg: CurrentSegment): Promise<void> {
    const handle = await seg.staged.openForRead();
    let header;
    try {
      const { buffer, bytesRead } = await handle.read(Buffer.alloc(LONG_HEADER_SIZE), 0, LONG_HEADER_SIZE, 0);
      header = parseWalSegmentHeader(buffer.subarray(0, bytesRead));
    } finally {
      await handle.close();
    }
    const name = seg.staged.name;
    if (typeof header === 'string') throw new IntegrityError(`streamed ${name}: ${header}`);
    if (header.systemIdentifier !== this.opts.systemId) {
      throw new IntegrityError(`streamed ${name} belongs to database system ${header.systemIdentifier}, but the server identified itself as ${this.opts.systemId}`);
    }
    if (header.segmentSize !== this.opts.segmentSize || header.pageAddress !== seg.start) {
      throw new IntegrityError(`streamed ${name}: its first page is for LSN ${formatLsn(header.pageAddress)} in ${header.segmentSize}-byte segments, not ${formatLsn(seg.start)} in ${this.opts.segmentSize}-byte segments`);
    }
    if (!this.#clusterChecked) {
      // The archive may have no cluster record yet (a fresh `walts init` without --pgdata): the first
      // write claims it for this cluster, exactly as a first wal-push would.
      const existing = await readClusterRecord(this.deps.storage);
      const record = await ensureClusterRecord(this.deps.storage, existing, header, this.deps);
      if (record.system_identifier !== header.systemIdentifier) {
        throw new IntegrityError(`this store belongs to database system ${record.system_identifier}, but the server is system ${header.systemIdentifier}; use a separate WALTS_STORE prefix per cluster`);
      }
      this.#clusterChecked = true;
      // A push session opened before the record existed would try to create it again for every
      // segment (a create-if-absent that fails, or, where the store ignores the condition, a rewrite).
      if (!existing) this.#session = new PushSession(this.deps);
    }
  }
}
