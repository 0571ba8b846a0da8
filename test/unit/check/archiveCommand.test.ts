import { archiveCommandItem } from '../../../src/ops/check/archiveCommandItem';
import { parseArchiveCommand, passesWalPath, splitCommands } from '../../../src/ops/check/archiveCommand';

describe('splitCommands: words as /bin/sh reads them', () => {
  it('keeps quoted parts together and joins adjacent quotes into one word', () => {
    expect(splitCommands(`PATH='/opt/node/bin':"$PATH" '/opt/walts/bin/walts' wal-push %p`)).toEqual([['PATH=/opt/node/bin:$PATH', '/opt/walts/bin/walts', 'wal-push', '%p']]);
  });
  it('splits on ; && || | and newlines, and drops a comment', () => {
    expect(splitCommands('test ! -f /x && walts wal-push %p || exit 1; echo ok # done')).toEqual([['test', '!', '-f', '/x'], ['walts', 'wal-push', '%p'], ['exit', '1'], ['echo', 'ok']]);
  });
  it('reads backslash escapes outside and inside double quotes', () => {
    expect(splitCommands('a\\ b "c\\"d" \'e\\f\'')).toEqual([['a b', 'c"d', 'e\\f']]);
  });
});

describe('parseArchiveCommand', () => {
  it.each([
    ['walts wal-push %p', '%p'],
    ['/usr/local/bin/walts wal-push %p', '%p'],
    ['exec walts wal-push "%p"', '%p'],
    ['env WALTS_LOG_LEVEL=warn walts wal-push %p', '%p'],
    ['nice -n 10 timeout -s KILL 600 walts wal-push %p', '%p'],
    ['node /opt/walts/bin/walts.js wal-push %p', '%p'],
    ['walts --log-level warn wal-push pg_wal/%f', 'pg_wal/%f'],
    ['test ! -f /tmp/pause && walts wal-push %p', '%p'],
  ])('%s calls walts wal-push', (command, pathArg) => {
    const call = parseArchiveCommand(command);
    expect(call.walts).toBe(true);
    expect(call.pathArg).toBe(pathArg);
    expect(passesWalPath(call.pathArg)).toBe(true);
  });

  it.each([
    ['/bin/true', 'true'],
    ['cp %p /mnt/archive/%f', 'cp'],
    ['envdir /etc/wal-e.d/env wal-e wal-push %p', 'wal-e'],
    ['walts wal-fetch %f %p', 'walts'],
    ['pgbackrest --stanza=main archive-push %p', 'pgbackrest'],
  ])('%s does not', (command, program) => {
    expect(parseArchiveCommand(command)).toMatchObject({ walts: false, program });
  });

  it('finds the store named on the command line: an assignment, --store, WALE_S3_PREFIX, --config, envdir', () => {
    expect(parseArchiveCommand('WALTS_STORE=s3://b/p walts wal-push %p').store).toEqual({ value: 's3://b/p', from: 'WALTS_STORE in archive_command' });
    expect(parseArchiveCommand('walts --store=s3://b/q wal-push %p').store).toEqual({ value: 's3://b/q', from: '--store in archive_command' });
    expect(parseArchiveCommand('walts --store s3://b/r wal-push %p').store?.value).toBe('s3://b/r');
    expect(parseArchiveCommand('env WALE_S3_PREFIX=s3://b/w walts wal-push %p').store?.value).toBe('s3://b/w');
    expect(parseArchiveCommand('walts --config /etc/walts/env wal-push %p').configFile).toBe('/etc/walts/env');
    expect(parseArchiveCommand('WALTS_CONFIG=/etc/walts/env walts wal-push %p').configFile).toBe('/etc/walts/env');
    expect(parseArchiveCommand('envdir /etc/walts.d walts wal-push %p').envdir).toBe('/etc/walts.d');
    expect(parseArchiveCommand('chpst -e /etc/walts.d walts wal-push %p').envdir).toBe('/etc/walts.d');
  });

  it('tells %f from %p', () => {
    expect(passesWalPath(parseArchiveCommand('walts wal-push %f').pathArg)).toBe(false);
    expect(passesWalPath(parseArchiveCommand('walts wal-push').pathArg)).toBe(false);
  });
});

describe('archiveCommandItem', () => {
  const files: Record<string, string> = { '/etc/walts/env': 'WALTS_STORE=s3://other/db1\n', '/etc/walts.d/WALTS_STORE': 's3://acme/db1\n' };
  const ctx = {
    store: 's3://acme/db1',
    readFile: (path: string) => {
      const text = files[path];
      if (text === undefined) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      return text;
    },
  };

  it('passes walts wal-push %p, saying that the store was not compared when it cannot be seen', () => {
    const item = archiveCommandItem('walts wal-push %p', undefined, ctx);
    expect(item.status).toBe('ok');
    expect(item.detail).toMatch(/server's environment, which check cannot see: not compared/);
  });
  it('compares the store when the command line names it', () => {
    expect(archiveCommandItem('WALTS_STORE=s3://acme/db1/ walts wal-push %p', undefined, ctx)).toMatchObject({ status: 'ok', detail: expect.stringMatching(/this store/) });
    expect(archiveCommandItem('envdir /etc/walts.d walts wal-push %p', undefined, ctx)).toMatchObject({ status: 'ok', detail: expect.stringMatching(/envdir \/etc\/walts.d/) });
    const other = archiveCommandItem('walts --config /etc/walts/env wal-push %p', undefined, ctx);
    expect(other).toMatchObject({ status: 'fail', detail: 'archives to s3://other/db1 (WALTS_STORE in /etc/walts/env), but WALTS_STORE here is s3://acme/db1' });
  });
  it('fails what does not archive through walts, each with the line to set', () => {
    for (const [command, library, detail] of [
      ['', undefined, /empty/],
      ['/bin/true', undefined, /runs true, not walts wal-push/],
      ['walts wal-push %f', undefined, /gives wal-push '%f', not the WAL file's path %p/],
      ['walts wal-push %p', 'basic_archive', /archive_library = 'basic_archive' is set/],
    ] as const) {
      const item = archiveCommandItem(command, library, ctx);
      expect(item.status).toBe('fail');
      expect(item.detail).toMatch(detail);
      expect(item.fix).toMatch(/archive_command = 'walts wal-push %p'/);
    }
  });
});
