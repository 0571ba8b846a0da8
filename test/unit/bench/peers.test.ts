/**
 * The bench's peer detection: a peer absent from the PATH searched is reported "missing" (and the run
 * goes on) unless it may be installed; the installer is only called when allowed.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectPeer, findCommand, PGBACKREST, type Installer } from '../../../scripts/bench/peers';

describe('bench peer detection', () => {
  let empty: string;
  let withPeer: string;
  beforeAll(() => {
    empty = mkdtempSync(join(tmpdir(), 'bench-empty-'));
    withPeer = mkdtempSync(join(tmpdir(), 'bench-peer-'));
    writeFileSync(join(withPeer, 'pgbackrest'), '#!/bin/sh\n');
    chmodSync(join(withPeer, 'pgbackrest'), 0o755);
    writeFileSync(join(withPeer, 'not-executable'), '');
  });
  afterAll(() => {
    rmSync(empty, { recursive: true, force: true });
    rmSync(withPeer, { recursive: true, force: true });
  });

  const never: Installer = () => {
    throw new Error('installer called although not allowed');
  };

  it('finds a command only as an executable file on the given PATH', () => {
    expect(findCommand('pgbackrest', `${empty}:${withPeer}`)).toBe(join(withPeer, 'pgbackrest'));
    expect(findCommand('pgbackrest', empty)).toBeUndefined();
    expect(findCommand('not-executable', withPeer)).toBeUndefined();
    expect(findCommand('pgbackrest', '')).toBeUndefined();
  });

  it('reports a present peer with the directory its sibling commands are in', () => {
    expect(detectPeer(PGBACKREST, { pathEnv: withPeer, mayInstall: false, install: never })).toEqual({ present: true, dir: withPeer, installed: false });
  });

  it('says missing, without installing, when installing is not allowed', () => {
    const s = detectPeer(PGBACKREST, { pathEnv: empty, mayInstall: false, install: never });
    expect(s).toEqual({ present: false, note: 'pgbackrest not found on the PATH searched (Debian package pgbackrest); skipped' });
  });

  it('says missing with the installer\'s reason when the install fails', () => {
    const asked: string[] = [];
    const s = detectPeer(PGBACKREST, {
      pathEnv: empty,
      mayInstall: true,
      install: (pkg) => {
        asked.push(pkg);
        return { ok: false, detail: 'E: Unable to locate package pgbackrest' };
      },
    });
    expect(asked).toEqual(['pgbackrest']);
    expect(s).toEqual({ present: false, note: 'pgbackrest could not be installed (E: Unable to locate package pgbackrest); skipped' });
  });

  it('uses the peer once the installer has put it on the PATH', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bench-install-'));
    try {
      const s = detectPeer(PGBACKREST, {
        pathEnv: dir,
        mayInstall: true,
        install: () => {
          writeFileSync(join(dir, 'pgbackrest'), '#!/bin/sh\n', { mode: 0o755 });
          return { ok: true, detail: '' };
        },
      });
      expect(s).toEqual({ present: true, dir, installed: true });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('says missing when the install succeeds but the command is not on the PATH searched', () => {
    const s = detectPeer(PGBACKREST, { pathEnv: empty, mayInstall: true, install: () => ({ ok: true, detail: '' }) });
    expect(s).toEqual({ present: false, note: 'pgbackrest installed but pgbackrest is not on the PATH searched; skipped' });
  });
});
