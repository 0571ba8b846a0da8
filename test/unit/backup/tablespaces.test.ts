/** Where a restore puts tablespaces: only where the operator said, never where the backup's metadata says. */
import { planTablespaces } from '../../../src/backup/tablespaces';
import type { BackupSentinel } from '../../../src/backup/sentinel';
import { IntegrityError, UsageError } from '../../../src/errors';

const backup = (tablespaces: unknown[]): BackupSentinel => ({ name: 'base_X', tablespaces }) as unknown as BackupSentinel;
const ts = (oid: number, name: string, location: string) => ({ oid, name, location });

describe('planTablespaces', () => {
  it('uses --tablespace by name or OID; no tablespaces needs no option', () => {
    expect(planTablespaces(backup([]), new Map(), '/srv/dest')).toEqual(new Map());
    const b = backup([ts(16400, 'fast', '/mnt/fast'), ts(16401, 'slow', '/mnt/slow')]);
    expect(planTablespaces(b, new Map([['fast', '/mnt/fast'], ['16401', '/other/slow']]), '/srv/dest')).toEqual(
      new Map([
        [16400, '/mnt/fast'],
        [16401, '/other/slow'],
      ]),
    );
  });

  it('refuses a recorded location the operator did not confirm (a forged /anywhere/ts), exit 3, naming the option', () => {
    const err = (() => {
      try {
        planTablespaces(backup([ts(16400, 'evil', '/anywhere/ts')]), new Map(), '/srv/dest');
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as Error).message).toMatch(/give --tablespace evil=DIR \(recorded at "\/anywhere\/ts"\)/);
  });

  it.each([
    [[{ oid: 'x', name: 'a', location: '/a' }], /malformed/],
    [[ts(0, 'a', '/a')], /malformed/],
    [[ts(5, 'a', '/a'), ts(5, 'b', '/b')], /recorded twice/],
  ])('refuses malformed records %j', (records, message) => {
    expect(() => planTablespaces(backup(records), new Map([['a', '/a']]), '/srv/dest')).toThrow(message);
  });

  it.each([
    ['/srv/dest/ts', /overlaps the destination/],
    ['/srv', /overlaps the destination/],
    ['/srv/dest', /overlaps the destination/],
    ['/', /absolute, normalised/],
    ['relative/ts', /absolute, normalised/],
    ['/a/../b', /absolute, normalised/],
    ['/a/b\nc', /absolute, normalised/],
  ])('refuses the directory %j (exit 2)', (dir, message) => {
    expect(() => planTablespaces(backup([ts(16400, 'a', '/x')]), new Map([['a', dir]]), '/srv/dest')).toThrow(UsageError);
    expect(() => planTablespaces(backup([ts(16400, 'a', '/x')]), new Map([['a', dir]]), '/srv/dest')).toThrow(message);
  });

  it('refuses overlapping tablespace directories and an option naming no tablespace', () => {
    const b = backup([ts(16400, 'a', '/x'), ts(16401, 'b', '/y')]);
    expect(() => planTablespaces(b, new Map([['a', '/t'], ['b', '/t/b']]), '/srv/dest')).toThrow(/overlaps the directory of tablespace 16401/);
    expect(() => planTablespaces(b, new Map([['a', '/t'], ['b', '/u'], ['c', '/v']]), '/srv/dest')).toThrow(/--tablespace c: no such tablespace/);
  });
});
