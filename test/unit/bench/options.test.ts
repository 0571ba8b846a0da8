/** The bench's command line: defaults, --only row selection, and refusals. */
import { parseOnly, parseOptions, ROW_IDS } from '../../../scripts/bench/options';

describe('bench options', () => {
  it('measures every row by default, with the issue\'s load and replay sizes', () => {
    const o = parseOptions([], { PATH: '/usr/bin:/bin' });
    expect([...o.only]).toEqual([...ROW_IDS]);
    expect(o).toMatchObject({ rounds: 3, scale: 20, loadSeconds: 60, replaySegments: 32, peerPath: '/usr/bin:/bin', noInstall: false, lagBarman: false });
  });

  it('takes row ids and group names in --only', () => {
    expect([...parseOnly('wal-push,wal-fetch')].sort()).toEqual(['fetch1', 'fetch16', 'push1', 'push16']);
    expect([...parseOnly('lag, pitr')].sort()).toEqual(['lag', 'pitr']);
    expect([...parseOnly('push1')]).toEqual(['push1']);
  });

  it('adds the backup when only backup-fetch is asked for (it restores that backup)', () => {
    expect([...parseOnly('backup-fetch')].sort()).toEqual(['backup', 'restore']);
  });

  it('refuses unknown rows, arguments and bad numbers', () => {
    expect(() => parseOnly('wal-pushes')).toThrow(/unknown row "wal-pushes"/);
    expect(() => parseOnly(',')).toThrow(/no rows/);
    expect(() => parseOptions(['--rounds', '0'])).toThrow(/positive whole number/);
    expect(() => parseOptions(['--bogus'])).toThrow(/unknown argument/);
    expect(() => parseOptions(['--only'])).toThrow(/needs a value/);
  });

  it('takes the PATH peers are looked for in from --peer-path', () => {
    expect(parseOptions(['--peer-path', '/nowhere', '--no-install'], { PATH: '/usr/bin' })).toMatchObject({ peerPath: '/nowhere', noInstall: true });
  });
});
