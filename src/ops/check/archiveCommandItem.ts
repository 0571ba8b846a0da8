/**
 * The archive_command item: the server's archive_command runs walts wal-push with %p, and, where
 * the command line tells (an inline WALTS_STORE, --store, a --config file or an envdir directory
 * that can be read here), with this store. The server's own environment (systemd Environment=,
 * the postmaster's variables) cannot be seen from here: then the item says so, and --switch-wal
 * is the end-to-end proof.
 */
import { join } from 'node:path';
import { parseEnvFile } from '../../config';
import { parseArchiveCommand, passesWalPath } from './archiveCommand';
import { fail, ok, type CheckItem } from './item';

export interface ArchiveCommandContext {
  /** WALTS_STORE as configured here. */
  readonly store?: string;
  /** Reads a file (a --config file, an envdir entry); throws when it cannot. */
  readonly readFile: (path: string) => string;
}

const FIX = "archive_command = 'walts wal-push %p' (then SELECT pg_reload_conf())";

export function archiveCommandItem(command: string, archiveLibrary: string | undefined, ctx: ArchiveCommandContext): CheckItem {
  const name = 'archive_command';
  if (archiveLibrary) return fail(name, `archive_library = '${archiveLibrary}' is set: PostgreSQL uses it instead of archive_command`, `unset archive_library and set ${FIX}`);
  if (command.trim() === '') return fail(name, 'empty: PostgreSQL archives nothing and keeps every WAL file in pg_wal until the disk is full', `set ${FIX}`);
  const call = parseArchiveCommand(command);
  if (!call.walts) return fail(name, `'${command}' runs ${call.program ?? 'something else'}, not walts wal-push`, `set ${FIX}`);
  if (!passesWalPath(call.pathArg)) return fail(name, `'${command}' gives wal-push ${call.pathArg === undefined ? 'no file' : `'${call.pathArg}'`}, not the WAL file's path %p`, `set ${FIX}`);
  const seen = serverStore(call, ctx);
  if (seen && ctx.store && norm(seen.value) !== norm(ctx.store)) {
    return fail(name, `archives to ${seen.value} (${seen.from}), but WALTS_STORE here is ${ctx.store}`, 'make the two agree: one store per cluster, the one walts init created');
  }
  if (seen) return ok(name, `calls walts wal-push %p with ${seen.from} = ${seen.value}: this store`);
  return ok(name, 'calls walts wal-push %p; its store comes from the server\'s environment, which check cannot see: not compared (--switch-wal proves it end to end)');
}

/** The store named by the command line, its --config file or its envdir, when readable here. */
function serverStore(call: ReturnType<typeof parseArchiveCommand>, ctx: ArchiveCommandContext): { value: string; from: string } | undefined {
  if (call.store) return call.store;
  if (call.configFile) {
    try {
      const values = parseEnvFile(ctx.readFile(call.configFile));
      const v = values['WALTS_STORE'] ?? values['WALE_S3_PREFIX'];
      if (v) return { value: v, from: `WALTS_STORE in ${call.configFile}` };
    } catch {
      // Not readable by this user: not compared.
    }
  }
  if (call.envdir) {
    for (const variable of ['WALTS_STORE', 'WALE_S3_PREFIX']) {
      try {
        const v = ctx.readFile(join(call.envdir, variable)).split('\n')[0]?.trim();
        if (v) return { value: v, from: `${variable} in envdir ${call.envdir}` };
      } catch {
        // not there, or not readable here
      }
    }
  }
  return undefined;
}

function norm(url: string): string {
  return url.replace(/\/+$/, '');
}
