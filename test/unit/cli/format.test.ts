import { formatBytes, formatDuration, parseSize, shortTime, table } from '../../../src/cli/format';
import { terminalProgress } from '../../../src/cli/progress';

describe('formatBytes', () => {
  it.each([
    [0, '0 B'],
    [1, '1 B'],
    [1023, '1023 B'],
    [1024, '1.00 KiB'],
    [1536, '1.50 KiB'],
    [10 * 1024, '10.0 KiB'],
    [99.94 * 1024, '99.9 KiB'],
    [100 * 1024, '100 KiB'],
    [1024 ** 2, '1.00 MiB'],
    [1_050_000_000, '1001 MiB'],
    [1024 ** 3, '1.00 GiB'],
    [5.5 * 1024 ** 4, '5.50 TiB'],
    [3 * 1024 ** 5, '3.00 PiB'],
    [2048 * 1024 ** 5, '2048 PiB'],
  ])('%d bytes is %s', (n, text) => {
    expect(formatBytes(n)).toBe(text);
  });

  it('rounds fractional byte counts (rates) to whole bytes', () => {
    expect(formatBytes(512.3333)).toBe('512 B');
    expect(formatBytes(0.4)).toBe('0 B');
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0s'],
    [0.4, '0s'],
    [59.4, '59s'],
    [59.6, '1m00s'],
    [61, '1m01s'],
    [3599, '59m59s'],
    [3600, '1h00m'],
    [3 * 3600 + 5 * 60 + 59, '3h05m'],
    [50 * 3600, '50h00m'],
    [Infinity, '?'],
    [NaN, '?'],
  ])('%d seconds is %s', (s, text) => {
    expect(formatDuration(s)).toBe(text);
  });
});

describe('table', () => {
  it('aligns columns under a header line, two spaces apart, the last column unpadded', () => {
    const out = table([
      ['name', 'finished', 'data'],
      ['base_000000010000000000000004_00000028', '2026-11-21 22:41:05Z', '1.00 GiB'],
      ['base_x', '-', '12 B'],
    ]);
    expect(out).toBe(
      'name                                    finished              data\n' +
        'base_000000010000000000000004_00000028  2026-11-21 22:41:05Z  1.00 GiB\n' +
        'base_x                                  -                     12 B\n',
    );
    const lines = out.split('\n');
    expect(lines[0]!.split(/\s+/)).toEqual(['name', 'finished', 'data']);
    // Each row starts with its name, so `cut -d' ' -f1` / awk '{print $1}' give the names.
    expect(lines.slice(1, 3).map((l) => l.split(' ')[0])).toEqual(['base_000000010000000000000004_00000028', 'base_x']);
    for (const l of lines.slice(0, 3)) expect(l).not.toMatch(/\s$/);
  });

  it('prints only the header for no rows', () => {
    expect(table([['name', 'size']])).toBe('name  size\n');
  });
});

describe('parseSize', () => {
  it.each([
    ['1GiB', 1024 ** 3],
    ['512MiB', 512 * 1024 ** 2],
    ['8M', 8 * 1024 ** 2],
    ['100m', 100 * 1024 ** 2],
    ['1G', 1024 ** 3],
    ['1gb', 1024 ** 3],
    ['2T', 2 * 1024 ** 4],
    ['1.5k', 1536],
    ['64 KiB', 64 * 1024],
    ['100', 100],
    ['100B', 100],
    [' 7 ', 7],
    ['0', 0],
  ])('%j is %d bytes', (text, n) => {
    expect(parseSize(text)).toBe(n);
  });

  it.each(['', 'abc', '1P', '1XB', '-1', '1GiBs', 'GiB', '1..5M', '1e6', '0x10', '1 G B'])('%j is not a size', (text) => {
    expect(parseSize(text)).toBeUndefined();
  });
});

describe('shortTime', () => {
  it('prints UTC to the second, and passes through what it cannot read', () => {
    expect(shortTime('2026-11-21T22:40:01.123+00:00')).toBe('2026-11-21 22:40:01Z');
    expect(shortTime('2026-11-21T23:40:01+01:00')).toBe('2026-11-21 22:40:01Z');
    expect(shortTime('not a time')).toBe('not a time');
  });
});

describe('terminalProgress', () => {
  const fakeStream = (isTTY: boolean) => {
    const writes: string[] = [];
    const stream = { isTTY, write: (s: string) => writes.push(s) > 0 } as unknown as NodeJS.WriteStream;
    return { stream, writes };
  };

  beforeEach(() => {
    jest.useFakeTimers({ now: new Date('2026-11-21T22:00:00Z') });
  });
  afterEach(() => {
    jest.useRealTimers();
  });

  it('draws nothing off a terminal', () => {
    const { stream, writes } = fakeStream(false);
    expect(terminalProgress('backup-push', stream)).toBeUndefined();
    expect(writes).toEqual([]);
  });

  it('redraws one line with bytes, percentage, rate and ETA, at most five times a second', () => {
    const { stream, writes } = fakeStream(true);
    const p = terminalProgress('backup-push', stream)!;
    expect(p).toBeDefined();
    jest.advanceTimersByTime(2000);
    p.update(4 * 1024 ** 2, 40 * 1024 ** 2);
    expect(writes).toEqual(['\rbackup-push: 4.00 MiB of ~40.0 MiB (10%), 2.00 MiB/s, ETA 18s\x1b[K']);

    jest.advanceTimersByTime(100); // too soon: not redrawn
    p.update(5 * 1024 ** 2, 40 * 1024 ** 2);
    expect(writes).toHaveLength(1);

    jest.advanceTimersByTime(1900); // 4 s in, 20 MiB: 5 MiB/s, 20 MiB to go
    p.update(20 * 1024 ** 2, 40 * 1024 ** 2);
    expect(writes[1]).toBe('\rbackup-push: 20.0 MiB of ~40.0 MiB (50%), 5.00 MiB/s, ETA 4s\x1b[K');

    // The total is an estimate (database sizes): past it, the line says 99% and no ETA.
    jest.advanceTimersByTime(1000);
    p.update(50 * 1024 ** 2, 40 * 1024 ** 2);
    expect(writes[2]).toMatch(/^\rbackup-push: 50\.0 MiB of ~40\.0 MiB \(99%\), 10\.0 MiB\/s, ETA \?\x1b\[K$/);
    for (const w of writes) expect(w).toMatch(/^\r[^\n]*\x1b\[K$/);

    p.end();
    expect(writes[3]).toBe('\r\x1b[K');
  });

  it('handles an unknown total and leaves the line alone if it never drew', () => {
    const { stream, writes } = fakeStream(true);
    const quiet = terminalProgress('x', stream)!;
    quiet.end();
    expect(writes).toEqual([]);
    const p = terminalProgress('backup-fetch', stream)!;
    jest.advanceTimersByTime(1000);
    p.update(300, 0);
    expect(writes).toEqual(['\rbackup-fetch: 300 B of ~0 B (0%), 300 B/s, ETA ?\x1b[K']);
  });
});
