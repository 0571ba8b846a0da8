/**
 * Reading `archive_command` the way /bin/sh would, far enough to tell whether it runs
 * `walts wal-push` with the WAL file's path (%p), and, where the command line itself says so, with
 * which store. Pure: no shell is run and nothing is expanded (`$VAR` stays text).
 *
 * Recognised around the walts call: `VAR=value` assignments, `env [-i] [VAR=value...]`, `exec`,
 * `nohup`, `nice [-n N]`, `timeout [opts] DURATION`, `envdir DIR` (daemontools, as WAL-E setups
 * use it), `chpst -e DIR`, and `node .../walts.js`. Several commands joined with `;`, `&&`, `||` or
 * `|` are looked at one by one; the first that runs walts counts.
 */
import { SETTINGS } from '../../config';

export interface ArchiveCommandCall {
  /** The first program the command runs (for "runs X, not walts"). */
  readonly program?: string;
  /** True when some simple command in it runs `walts wal-push`. */
  readonly walts: boolean;
  /** The argument given to wal-push as the WAL file. */
  readonly pathArg?: string;
  /** WALTS_STORE (or WALE_S3_PREFIX, or --store) set on the command line itself. */
  readonly store?: { readonly value: string; readonly from: string };
  /** `--config FILE` or `WALTS_CONFIG=FILE` on the command line. */
  readonly configFile?: string;
  /** `envdir DIR` / `chpst -e DIR`: a directory of one-file-per-variable settings. */
  readonly envdir?: string;
}

/** Flags that take a value (every setting's flag except the boolean one), as `--flag VALUE`. */
const VALUE_FLAGS = new Set<string>([...Object.values(SETTINGS).filter((f): f is NonNullable<typeof f> => f !== undefined && f !== 's3-force-path-style'), 'config']);

export function parseArchiveCommand(command: string): ArchiveCommandCall {
  const commands = splitCommands(command);
  let first: string | undefined;
  for (const words of commands) {
    const call = parseSimple(words);
    first ??= call.program;
    if (call.walts) return { ...call, program: first };
  }
  return { program: first, walts: false };
}

function parseSimple(words: readonly string[]): ArchiveCommandCall {
  const env: Record<string, string> = {};
  let envdir: string | undefined;
  let i = 0;
  const assignment = (w: string | undefined) => w !== undefined && /^[A-Za-z_][A-Za-z0-9_]*=/.test(w);
  const assign = (w: string) => {
    const eq = w.indexOf('=');
    env[w.slice(0, eq)] = w.slice(eq + 1);
  };
  for (;;) {
    const w = words[i];
    if (w === undefined) break;
    if (assignment(w)) {
      assign(w);
      i++;
      continue;
    }
    const base = basename(w);
    if (base === 'env') {
      i++;
      while (words[i] !== undefined && (words[i]!.startsWith('-') || assignment(words[i]))) {
        const o = words[i]!;
        if (assignment(o)) assign(o);
        i += o === '-u' || o === '--unset' || o === '-C' || o === '--chdir' ? 2 : 1;
      }
      continue;
    }
    if (base === 'exec' || base === 'nohup' || base === 'command') {
      i++;
      continue;
    }
    if (base === 'nice') {
      i++;
      if (words[i] === '-n') i += 2;
      else if (/^-(n)?\d+$/.test(words[i] ?? '')) i++;
      continue;
    }
    if (base === 'timeout') {
      i++;
      while ((words[i] ?? '').startsWith('-')) i += words[i] === '-s' || words[i] === '-k' ? 2 : 1;
      i++; // the duration
      continue;
    }
    if (base === 'envdir') {
      envdir = words[i + 1];
      i += 2;
      continue;
    }
    if (base === 'chpst') {
      i++;
      while ((words[i] ?? '').startsWith('-')) {
        if (words[i] === '-e') envdir = words[i + 1];
        i += /^-[uUbnlLmdofpcre]$/.test(words[i]!) ? 2 : 1;
      }
      continue;
    }
    break;
  }
  let program = words[i];
  if (program !== undefined && /^node(js)?$/.test(basename(program)) && /^walts(\.js)?$/.test(basename(words[i + 1] ?? ''))) program = words[++i];
  if (program === undefined || !/^walts(\.js)?$/.test(basename(program))) return { program: program && basename(program), walts: false };

  const positionals: string[] = [];
  let store: ArchiveCommandCall['store'];
  let configFile = env['WALTS_CONFIG'];
  for (let j = i + 1; j < words.length; j++) {
    const w = words[j]!;
    const long = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(w);
    if (long) {
      const value = long[2] ?? (VALUE_FLAGS.has(long[1]!) ? words[++j] : undefined);
      if (long[1] === 'store' && value !== undefined) store = { value, from: '--store in archive_command' };
      if (long[1] === 'config' && value !== undefined) configFile = value;
      continue;
    }
    if (!w.startsWith('-') || w === '-') positionals.push(w);
  }
  if (positionals[0] !== 'wal-push') return { program: basename(program), walts: false };
  if (!store && env['WALTS_STORE']) store = { value: env['WALTS_STORE'], from: 'WALTS_STORE in archive_command' };
  if (!store && env['WALE_S3_PREFIX']) store = { value: env['WALE_S3_PREFIX'], from: 'WALE_S3_PREFIX in archive_command' };
  return { program: basename(program), walts: true, pathArg: positionals[1], store, configFile, envdir };
}

/** Whether wal-push is given the WAL file's path: %p, or pg_wal/%f (the same file, relative to PGDATA). */
export function passesWalPath(pathArg: string | undefined): boolean {
  return pathArg !== undefined && (pathArg.includes('%p') || /(^|\/)pg_wal\/%f$/.test(pathArg));
}

/**
 * Splits a shell command line into simple commands of words: quotes and backslashes as sh reads
 * them, `;` `&&` `||` `|` `&` and newlines between commands. Unbalanced quotes end the word at the end.
 */
export function splitCommands(line: string): string[][] {
  const commands: string[][] = [];
  let words: string[] = [];
  let word = '';
  let inWord = false;
  const endWord = () => {
    if (inWord) words.push(word);
    word = '';
    inWord = false;
  };
  const endCommand = () => {
    endWord();
    if (words.length > 0) commands.push(words);
    words = [];
  };
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === "'") {
      const close = line.indexOf("'", i + 1);
      const end = close < 0 ? line.length : close;
      word += line.slice(i + 1, end);
      inWord = true;
      i = end;
    } else if (c === '"') {
      inWord = true;
      for (i++; i < line.length && line[i] !== '"'; i++) {
        if (line[i] === '\\' && i + 1 < line.length && '"\\$`'.includes(line[i + 1]!)) i++;
        word += line[i];
      }
    } else if (c === '\\') {
      if (i + 1 < line.length && line[i + 1] !== '\n') word += line[i + 1];
      inWord = true;
      i++;
    } else if (c === ' ' || c === '\t') {
      endWord();
    } else if (c === ';' || c === '&' || c === '|' || c === '\n') {
      endCommand();
      if ((c === '&' || c === '|') && line[i + 1] === c) i++;
    } else if (c === '#' && !inWord) {
      break; // a comment runs to the end of the line
    } else {
      word += c;
      inWord = true;
    }
  }
  endCommand();
  return commands;
}

function basename(word: string): string {
  return word.slice(word.lastIndexOf('/') + 1);
}
