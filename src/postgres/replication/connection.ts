/**
 * A physical replication connection (a walsender session, what pg_receivewal opens), reached like
 * every other walts connection (postgres/client.ts: libpq environment, .pgpass, TLS) with the startup
 * parameter `replication=true`. It runs walsender commands (IDENTIFY_SYSTEM, TIMELINE_HISTORY,
 * READ_REPLICATION_SLOT, CREATE_REPLICATION_SLOT) and START_REPLICATION, whose CopyBoth phase is a
 * WalStream. One command at a time; none while a stream runs.
 *
 * pg's Client does the startup, authentication and TLS, and runs each command as a simple query. For
 * START_REPLICATION it also keeps the query open for the whole copy (its promise settles when the
 * server completes the command, with the end-of-timeline result set or an error), while the CopyBoth
 * messages are taken from its connection's events ('replicationStart' for CopyBothResponse,
 * 'copyData', 'copyDone') and sent with its connection's CopyData/CopyDone writers.
 */
import type { Client, QueryResult } from 'pg';
import { PgQueryError, type ConnectOptions, type PgSession, type SessionInternals, connect, sessionInternals } from '../client';
import { ProtocolError, UnavailableError, UsageError, WaltsError } from '../../errors';
import type { Lsn } from '../walName';
import {
  IDENTIFY_SYSTEM,
  type SlotState,
  type SystemIdentity,
  type TextRow,
  type TimelineHistoryFile,
  createPhysicalSlotCommand,
  parseIdentifySystem,
  parseReadReplicationSlot,
  parseTimelineEnd,
  parseTimelineHistory,
  readReplicationSlotCommand,
  slotErrorFor,
  startPhysicalReplicationCommand,
  timelineHistoryCommand,
} from './commands';
import { type CopyBothTransport, type StatusClock, WalStream } from './walStream';
import { type BackupPosition, type BackupTablespace, type BaseBackupOptions, baseBackupCommand, parseBackupPosition, parseTablespaceList } from './baseBackup';
import { BaseBackupStream } from './baseBackupStream';

/** pg's connection object: the parts this module uses (not in @types/pg). */
interface PgConnection {
  readonly stream: { pause(): void; resume(): void };
  on(event: string, fn: (msg: { chunk?: Buffer; fields?: (string | null)[] }) => void): void;
  off(event: string, fn: (msg: { chunk?: Buffer; fields?: (string | null)[] }) => void): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
}

/** Every value as the server's text: walsender answers are parsed by commands.ts, and TIMELINE_HISTORY's bytea is raw file content. */
const RAW_TEXT = { getTypeParser: () => (value: string) => value };

export interface StartPhysicalOptions {
  readonly slot: string;
  /** Where to start; a receiver starts at a segment boundary to get whole segments. */
  readonly start: Lsn;
  readonly timeline: number;
  /** See WalStreamOptions. */
  readonly statusIntervalMs?: number;
  readonly clock?: StatusClock;
  readonly highWaterMark?: number;
}

/** BASE_BACKUP once the server has begun the copy. */
export interface BaseBackupStart {
  readonly start: BackupPosition;
  /** The tablespaces, the data directory (oid undefined) last. */
  readonly tablespaces: readonly BackupTablespace[];
  /** The archives; ends with the end position, or fails with the server's error. */
  readonly stream: BaseBackupStream;
}

export class ReplicationConnection {
  /** A START_REPLICATION is running (from sending it until the server completes it). */
  #streaming = false;
  readonly #internals: SessionInternals;

  private constructor(readonly session: PgSession) {
    this.#internals = sessionInternals(session);
  }

  /** Connect as a physical replication client. Errors as connect()'s (ConfigError, UnavailableError). */
  static async open(options: Omit<ConnectOptions, 'replication'> = {}): Promise<ReplicationConnection> {
    return new ReplicationConnection(await connect({ ...options, replication: true }));
  }

  identifySystem(): Promise<SystemIdentity> {
    return this.#command(IDENTIFY_SYSTEM).then(parseIdentifySystem);
  }

  /**
   * A setting as SHOW prints it (`16MB`, `on`), or undefined when this role may not see it (settings
   * such as data_directory or archive_command need superuser or pg_read_all_settings).
   */
  async show(name: string): Promise<string | undefined> {
    if (!/^[a-z_]{1,63}$/.test(name)) throw new RangeError(`not a setting name: ${JSON.stringify(name)}`);
    let rows: TextRow[];
    try {
      rows = await this.#command(`SHOW ${name}`);
    } catch (e) {
      if (e instanceof PgQueryError && e.sqlState === '42501') return undefined;
      throw e;
    }
    const value = rows[0]?.[0];
    if (rows.length !== 1 || typeof value !== 'string') throw new ProtocolError(`SHOW ${name}: expected one value`);
    return value;
  }

  /** The history file of `timeline` (> 1; timeline 1 has none). */
  timelineHistory(timeline: number): Promise<TimelineHistoryFile> {
    return this.#command(timelineHistoryCommand(timeline)).then((rows) => parseTimelineHistory(timeline, rows));
  }

  /** The slot's state, or undefined when it does not exist. PostgreSQL 15+. */
  async readReplicationSlot(slot: string): Promise<SlotState | undefined> {
    if (this.session.serverVersionNum < 150000) {
      throw new UsageError(`READ_REPLICATION_SLOT needs PostgreSQL 15 or later; the server is ${this.session.serverVersionNum}`);
    }
    return parseReadReplicationSlot(slot, await this.#command(readReplicationSlotCommand(slot), slot));
  }

  /** CREATE_REPLICATION_SLOT ... PHYSICAL [RESERVE_WAL]. ReplicationSlotError 'exists' when taken. */
  async createPhysicalSlot(slot: string, opts: { reserveWal: boolean } = { reserveWal: true }): Promise<void> {
    await this.#command(createPhysicalSlotCommand(slot, opts), slot);
  }

  /**
   * START_REPLICATION SLOT ... PHYSICAL: resolves with the stream once the server has begun the copy,
   * or rejects with the server's refusal (ReplicationSlotError 'in-use', 'missing', ...).
   */
  async startPhysical(opts: StartPhysicalOptions): Promise<WalStream> {
    const sql = startPhysicalReplicationCommand(opts);
    this.#idle();
    const client = this.#internals.client;
    const con = (client as unknown as { connection: PgConnection }).connection;
    const transport: CopyBothTransport = {
      sendCopyData: (payload) => con.sendCopyFromChunk(payload),
      sendCopyDone: () => con.endCopyFrom(),
      // con.stream is read at each call: pg replaces it with the TLS socket after SSL negotiation.
      pause: () => con.stream.pause(),
      resume: () => con.stream.resume(),
    };
    // Made when the server answers CopyBothResponse: before that nothing may be sent in copy mode.
    let stream: WalStream | undefined;
    const onData = (msg: { chunk?: Buffer }) => {
      if (stream && msg.chunk) stream.receive(msg.chunk);
    };
    const onCopyDone = () => stream?.serverCopyDone();
    this.#streaming = true;
    return new Promise<WalStream>((resolve, reject) => {
      const onStart = () => {
        stream = new WalStream(transport, {
          start: opts.start,
          ...(opts.statusIntervalMs !== undefined ? { statusIntervalMs: opts.statusIntervalMs } : {}),
          ...(opts.clock ? { clock: opts.clock } : {}),
          ...(opts.highWaterMark !== undefined ? { highWaterMark: opts.highWaterMark } : {}),
        });
        resolve(stream);
      };
      con.on('replicationStart', onStart);
      con.on('copyData', onData);
      con.on('copyDone', onCopyDone);
      const done = () => {
        con.off('replicationStart', onStart);
        con.off('copyData', onData);
        con.off('copyDone', onCopyDone);
        this.#streaming = false;
      };
      client.query({ text: sql, rowMode: 'array', types: RAW_TEXT }).then(
        (r: QueryResult | QueryResult[]) => {
          done();
          if (!stream) {
            reject(new ProtocolError('START_REPLICATION completed without starting to stream'));
            return;
          }
          let end;
          try {
            const sets = resultSets(r);
            end = sets.length > 0 ? parseTimelineEnd(sets[0]!) : undefined;
          } catch (e) {
            stream.fail(e as Error);
            return;
          }
          stream.finish(end);
        },
        (e: unknown) => {
          done();
          const err = this.#error(e, opts.slot);
          if (stream) stream.fail(err);
          else reject(err);
        },
      );
    });
  }

  /**
   * BASE_BACKUP (baseBackup.ts): resolves once the server has sent the start position and the
   * tablespace list and begun the copy, or rejects with its refusal. The two result sets before the
   * copy are read from the connection's row events (pg's query settles only when the whole command
   * is over); the copy's messages go to a BaseBackupStream, which pauses the socket when its reader
   * is slow; the command's completion (with the end position) or failure ends that stream.
   */
  async baseBackup(opts: BaseBackupOptions & { highWaterMark?: number }): Promise<BaseBackupStart> {
    const sql = baseBackupCommand(opts);
    this.#idle();
    const client = this.#internals.client;
    const con = (client as unknown as { connection: PgConnection }).connection;
    const sets: (string | null)[][][] = [];
    let stream: BaseBackupStream | undefined;
    const onRowDescription = () => {
      if (!stream) sets.push([]);
    };
    const onDataRow = (msg: { fields?: (string | null)[] }) => {
      if (!stream) sets[sets.length - 1]?.push(msg.fields ?? []);
    };
    const onData = (msg: { chunk?: Buffer }) => {
      if (stream && msg.chunk) stream.receive(msg.chunk);
    };
    const onCopyDone = () => stream?.serverCopyDone();
    this.#streaming = true;
    return new Promise<BaseBackupStart>((resolve, reject) => {
      const onCopyOut = () => {
        if (stream) return;
        // con.stream is read at each call: pg replaces it with the TLS socket after SSL negotiation.
        stream = new BaseBackupStream({ pause: () => con.stream.pause(), resume: () => con.stream.resume() }, opts.highWaterMark !== undefined ? { highWaterMark: opts.highWaterMark } : {});
        try {
          if (sets.length !== 2) throw new ProtocolError(`BASE_BACKUP: expected 2 result sets before the copy, got ${sets.length}`);
          resolve({ start: parseBackupPosition('start', sets[0]!), tablespaces: parseTablespaceList(sets[1]!), stream });
        } catch (e) {
          reject(e as Error);
          stream.destroy(e as Error);
        }
      };
      const events: [string, (msg: { chunk?: Buffer; fields?: (string | null)[] }) => void][] = [
        ['rowDescription', onRowDescription],
        ['dataRow', onDataRow],
        ['copyOutResponse', onCopyOut],
        ['copyData', onData],
        ['copyDone', onCopyDone],
      ];
      for (const [name, fn] of events) con.on(name, fn);
      const done = () => {
        for (const [name, fn] of events) con.off(name, fn);
        this.#streaming = false;
      };
      client.query({ text: sql, rowMode: 'array', types: RAW_TEXT }).then(
        (r: QueryResult | QueryResult[]) => {
          done();
          if (!stream) {
            reject(new ProtocolError('BASE_BACKUP completed without a copy'));
            return;
          }
          try {
            const all = resultSets(r);
            stream.finish(parseBackupPosition('end', all[all.length - 1] ?? []));
          } catch (e) {
            stream.fail(e as Error);
          }
        },
        (e: unknown) => {
          done();
          const err = this.#error(e, undefined);
          if (stream) stream.fail(err);
          else reject(err);
        },
      );
    });
  }

  /** End the session (Terminate; a running stream ends with an error). Never throws. */
  async close(): Promise<void> {
    await this.session.close();
  }

  async #command(sql: string, slot?: string): Promise<TextRow[]> {
    this.#idle();
    let r: QueryResult | QueryResult[];
    try {
      r = await (this.#internals.client as Client).query({ text: sql, rowMode: 'array', types: RAW_TEXT });
    } catch (e) {
      throw this.#error(e, slot);
    }
    const sets = resultSets(r);
    return sets[0] ?? [];
  }

  #idle(): void {
    if (this.#streaming) throw new Error('a replication stream is running on this connection');
    if (this.session.closed) throw new UnavailableError('the replication connection is closed', { transient: true });
  }

  #error(e: unknown, slot: string | undefined): WaltsError {
    const err = this.#internals.toError(e);
    if (slot === undefined || !(err instanceof PgQueryError)) return err;
    const server = (e as { message?: unknown }).message;
    return slotErrorFor(slot, err.sqlState, typeof server === 'string' ? server : err.message, err) ?? err;
  }
}

/** The rows of each result set that had columns (walsender commands end with a bare CommandComplete too). */
function resultSets(r: QueryResult | QueryResult[]): TextRow[][] {
  const list = Array.isArray(r) ? r : [r];
  return list.filter((x) => x.fields.length > 0).map((x) => x.rows as TextRow[]);
}
