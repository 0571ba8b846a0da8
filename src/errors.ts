/**
 * The one error hierarchy of walts. Every failure a user can see is one of these classes; `main.ts`
 * alone turns them into exit codes (see `exitCodeFor`). Messages are one line, meant for an operator
 * reading PostgreSQL's log, and never contain secrets.
 */

export type ErrorKind =
  | 'usage' // bad arguments or configuration: nothing was touched
  | 'not-found' // the store answered "no such object"
  | 'integrity' // digest/size mismatch, different content under an archived name, wrong cluster
  | 'unavailable' // the store or database could not be reached after retries
  | 'crypto' // missing/wrong key or passphrase, undecryptable object
  | 'failed' // a check walts ran failed (restore-test: the restored server or a check on it): exit 1
  | 'internal';

export class WaltsError extends Error {
  readonly kind: ErrorKind;
  constructor(kind: ErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
    this.name = new.target.name;
  }
}

/** Bad command line or environment. `problems` lists every problem found, each naming its setting. */
export class UsageError extends WaltsError {
  readonly problems: readonly string[];
  constructor(problems: string | readonly string[]) {
    const list = typeof problems === 'string' ? [problems] : problems;
    super('usage', list.join('; '));
    this.problems = list;
  }
}

/** A setting is missing or wrong (named in the message). For wal-fetch this is a hard error, not "usage". */
export class ConfigError extends UsageError {}

/** The store answered that the object does not exist. Never used for "could not look". */
export class NotFoundError extends WaltsError {
  constructor(message: string) {
    super('not-found', message);
  }
}

/** Stored or offered content contradicts what is recorded: never retried, never overwritten. */
export class IntegrityError extends WaltsError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('integrity', message, options);
  }
}

/** Create-if-absent found the key taken (S3 412, EEXIST). The archive layer decides what it means. */
export class ObjectExistsError extends WaltsError {
  constructor(readonly key: string) {
    super('integrity', `object ${key} already exists`);
  }
}

/**
 * The store (or database) failed in a way that may pass: timeouts, resets, 5xx, throttling.
 * `transient=false` marks answers that will not change by retrying (access denied, no such bucket).
 */
export class UnavailableError extends WaltsError {
  readonly transient: boolean;
  constructor(message: string, options: { transient: boolean; cause?: unknown }) {
    super('unavailable', message, { cause: options.cause });
    this.transient = options.transient;
  }
}

/** Key material missing or wrong, or an object that cannot be decrypted/decoded. */
export class CryptoError extends WaltsError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('crypto', message, options);
  }
}

/**
 * `walts check` found failing items (its report, already printed, names them). `exitCode` is the
 * code check chose (cli/check.ts): 3 normally, the Nagios plugin codes with --nagios.
 */
export class ChecksFailedError extends WaltsError {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super('integrity', message);
  }
}

/** The restore drill failed on something walts ran (its server, a query, the user's SQL): an answer, not a crash. */
export class DrillFailedError extends WaltsError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('failed', message, options);
  }
}

/**
 * A replication slot cannot be used as asked. `reason`: 'missing' (no such slot), 'in-use' (another
 * connection streams from it: `activePid` is its server process; two receivers on one slot lose
 * data, so this is a refusal, not something to retry blindly), 'exists' (create found it taken),
 * 'wrong-type' (a logical slot where a physical one is needed). Settings to fix: kind 'usage'.
 */
export class ReplicationSlotError extends WaltsError {
  constructor(
    message: string,
    readonly slot: string,
    readonly reason: 'missing' | 'in-use' | 'exists' | 'wrong-type',
    readonly activePid?: number,
    options?: { cause?: unknown },
  ) {
    super('usage', message, options);
  }
}

/** The server sent replication protocol bytes walts cannot read (a bug or a broken middlebox): never retried silently. */
export class ProtocolError extends WaltsError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('internal', message, options);
  }
}

export function isTransient(err: unknown): boolean {
  return err instanceof UnavailableError && err.transient;
}

/** One line for the operator: the message, without stack, with the cause's message when it adds detail. */
export function describeError(err: unknown): string {
  if (err instanceof WaltsError) return err.message;
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}
