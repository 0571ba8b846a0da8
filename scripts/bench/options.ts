/** The bench's command line, parsed by a pure function (unit-tested in test/unit/bench). */

/** Every row the bench can measure, in table order. */
export const ROW_IDS = ['push16', 'push1', 'fetch16', 'fetch1', 'backup', 'restore', 'lag', 'pitr'] as const;
export type RowId = (typeof ROW_IDS)[number];

/** Names `--only` accepts besides the row ids themselves. */
const ROW_GROUPS: Record<string, readonly RowId[]> = {
  'wal-push': ['push16', 'push1'],
  'wal-fetch': ['fetch16', 'fetch1'],
  'backup-push': ['backup'],
  'backup-fetch': ['restore'],
  backups: ['backup', 'restore'],
  replay: ['pitr'],
};

export interface BenchOptions {
  rounds: number;
  scale: number;
  out: string;
  /** Never apt-get a missing peer. */
  noInstall: boolean;
  /** Leave out the walts + OpenPGP column. */
  noPgp: boolean;
  /** Rows to measure (all by default). */
  only: ReadonlySet<RowId>;
  /** PATH in which the peers' commands are looked for (default: this process's PATH). */
  peerPath: string;
  /** Seconds of pgbench load in the archiver-lag row. */
  loadSeconds: number;
  /** WAL segments (at least) replayed in the PITR row. */
  replaySegments: number;
  /** Also measure barman-cloud in the lag row (slow: it falls far behind). */
  lagBarman: boolean;
}

const USAGE =
  'usage: bench [--rounds N] [--scale N] [--out FILE] [--no-install] [--no-pgp] [--only ROWS] [--peer-path PATH] ' +
  '[--load-seconds N] [--replay-segments N] [--lag-barman]';

export function parseOptions(argv: readonly string[], env: Readonly<Record<string, string | undefined>> = process.env): BenchOptions {
  const flags = new Set(['--no-install', '--no-pgp', '--lag-barman']);
  const valued = new Set(['--rounds', '--scale', '--out', '--only', '--peer-path', '--load-seconds', '--replay-segments']);
  const values = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (flags.has(a)) values.set(a, '');
    else if (valued.has(a)) {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value\n${USAGE}`);
      values.set(a, v);
    } else throw new Error(`unknown argument ${JSON.stringify(a)}\n${USAGE}`);
  }
  const whole = (name: string, fallback: number) => {
    const raw = values.get(`--${name}`);
    if (raw === undefined) return fallback;
    const v = Number(raw);
    if (!Number.isInteger(v) || v <= 0) throw new Error(`--${name} needs a positive whole number, got ${JSON.stringify(raw)}`);
    return v;
  };
  return {
    rounds: whole('rounds', 3),
    scale: whole('scale', 20),
    out: values.get('--out') ?? 'bench-results.md',
    noInstall: values.has('--no-install'),
    noPgp: values.has('--no-pgp'),
    only: parseOnly(values.get('--only')),
    peerPath: values.get('--peer-path') ?? env['PATH'] ?? '',
    loadSeconds: whole('load-seconds', 60),
    replaySegments: whole('replay-segments', 32),
    lagBarman: values.has('--lag-barman'),
  };
}

/** `--only wal-push,lag`: row ids or group names, comma-separated. backup-fetch needs a backup first. */
export function parseOnly(spec: string | undefined): ReadonlySet<RowId> {
  if (spec === undefined) return new Set(ROW_IDS);
  const rows = new Set<RowId>();
  for (const part of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const group = ROW_GROUPS[part] ?? ((ROW_IDS as readonly string[]).includes(part) ? [part as RowId] : undefined);
    if (!group) throw new Error(`--only: unknown row ${JSON.stringify(part)} (rows: ${[...ROW_IDS, ...Object.keys(ROW_GROUPS)].join(', ')})`);
    for (const r of group) rows.add(r);
  }
  if (!rows.size) throw new Error('--only: no rows given');
  if (rows.has('restore')) rows.add('backup');
  return rows;
}
