/**
 * `walts metrics --textfile PATH`: one refresh, written for node_exporter's textfile collector. The
 * collector may read the file at any moment, so it is written beside its final name, flushed, and
 * renamed over it: readers see the old file or the new one, never part of one.
 */
import { promises as fsp } from 'node:fs';
import { basename, dirname, join } from 'node:path';

export async function writeTextfile(path: string, text: string): Promise<void> {
  // A dot-name without .prom: the collector ignores it if we die before the rename.
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  const handle = await fsp.open(temp, 'w', 0o644);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fsp.rename(temp, path);
  } catch (err) {
    await fsp.rm(temp, { force: true });
    throw err;
  }
}
