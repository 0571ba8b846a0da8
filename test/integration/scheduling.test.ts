/**
 * The shipped schedule (contrib/systemd/, contrib/cron/walts; issue 9 item 6):
 * - `systemd-analyze verify` passes on every unit, with no warning at all (an unknown key is only a
 *   warning to systemd, but a broken unit to us). verify checks that ExecStart's program exists, so
 *   the units are verified as copies whose /usr/local/bin/walts is this checkout's bin/walts;
 *   skipped, with a message, where systemd-analyze is absent;
 * - the units keep the house conventions (postgres, walts.env, Persistent timers with a randomized
 *   delay, low priority for the heavy jobs, the metrics server restarted on failure);
 * - the walts command lines of the units and the cron file are accepted by this walts;
 * - docs/operations.md quotes the files exactly (one source of truth).
 */
import { existsSync, promises as fsp, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, run, runWalts, WALTS_BIN } from '../helpers/run';

const SYSTEMD_DIR = join(REPO_ROOT, 'contrib', 'systemd');
const CRON_FILE = join(REPO_ROOT, 'contrib', 'cron', 'walts');
const ANALYZE = '/usr/bin/systemd-analyze';
/** Where the units (and docs/operations.md section 1) expect walts. */
const INSTALLED_WALTS = '/usr/local/bin/walts';
const UNITS = readdirSync(SYSTEMD_DIR).sort();

type Unit = Map<string, Map<string, string[]>>;

/** Sections → key → values, in order (comments and blank lines dropped; no line continuations used). */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      unit.set(header[1]!, (section = new Map()));
      continue;
    }
    const eq = line.indexOf('=');
    if (!section || eq < 0) throw new Error(`not a unit line: ${line}`);
    const key = line.slice(0, eq);
    section.set(key, [...(section.get(key) ?? []), line.slice(eq + 1)]);
  }
  return unit;
}

const unitOf = (file: string) => parseUnit(readFileSync(join(SYSTEMD_DIR, file), 'utf8'));
const value = (u: Unit, section: string, key: string) => u.get(section)?.get(key);

/** The walts argument lists of every ExecStart and cron job. */
function waltsCommandLines(): { where: string; args: string[] }[] {
  const out: { where: string; args: string[] }[] = [];
  for (const file of UNITS.filter((f) => f.endsWith('.service'))) {
    for (const exec of value(unitOf(file), 'Service', 'ExecStart') ?? []) {
      const words = exec.split(/\s+/);
      out.push({ where: file, args: words.slice(words.indexOf(INSTALLED_WALTS) + 1) });
    }
  }
  for (const line of readFileSync(CRON_FILE, 'utf8').split('\n')) {
    if (line.trim() === '' || line.startsWith('#') || /^[A-Z_]+=/.test(line)) continue;
    const m = /^(\S+\s+){5}postgres\s+sh -c '(.*)'$/.exec(line);
    if (!m) throw new Error(`cron line not in the form "m h dom mon dow postgres sh -c '...'": ${line}`);
    const words = m[2]!.split(/\s+/);
    out.push({ where: `cron: ${line}`, args: words.slice(words.indexOf('walts') + 1) });
  }
  return out;
}

describe('contrib/systemd units and contrib/cron/walts', () => {
  it('ships a service and timer for backup-push, delete and restore-test, and a metrics service', () => {
    expect(UNITS).toEqual([
      'walts-backup.service',
      'walts-backup.timer',
      'walts-delete.service',
      'walts-delete.timer',
      'walts-metrics.service',
      'walts-receive.service',
      'walts-restore-test.service',
      'walts-restore-test.timer',
    ]);
    const exec = (f: string) => value(unitOf(f), 'Service', 'ExecStart');
    expect(exec('walts-backup.service')).toEqual([`${INSTALLED_WALTS} backup-push /var/lib/postgresql/15/main`]);
    expect(exec('walts-delete.service')).toEqual([`${INSTALLED_WALTS} delete window 7d --confirm`]);
    expect(exec('walts-restore-test.service')).toEqual([`${INSTALLED_WALTS} restore-test LATEST`]);
    expect(exec('walts-metrics.service')).toEqual([`${INSTALLED_WALTS} metrics`]);
    expect(exec('walts-receive.service')).toEqual([`${INSTALLED_WALTS} wal-receive --slot walts`]);
  });

  it('every service runs as postgres with /etc/walts/walts.env, hardened, without MemoryDenyWriteExecute', () => {
    for (const file of UNITS.filter((f) => f.endsWith('.service'))) {
      const s = unitOf(file).get('Service')!;
      const one = (key: string) => ({ file, key, value: s.get(key) });
      expect(one('User')).toEqual({ file, key: 'User', value: ['postgres'] });
      expect(one('EnvironmentFile')?.value?.[0]).toBe('/etc/walts/walts.env');
      for (const [key, v] of [['NoNewPrivileges', 'yes'], ['PrivateTmp', 'yes'], ['ProtectSystem', 'strict'], ['ProtectHome', 'yes'], ['PrivateDevices', 'yes']]) {
        expect(one(key!)).toEqual({ file, key, value: [v] });
      }
      // Node's JIT needs writable+executable memory.
      expect(one('MemoryDenyWriteExecute')).toEqual({ file, key: 'MemoryDenyWriteExecute', value: undefined });
    }
    const drill = unitOf('walts-restore-test.service').get('Service')!;
    expect(drill.get('Environment')).toEqual(['TMPDIR=/var/tmp']); // the scratch copy: private, writable, removed after
    const metrics = unitOf('walts-metrics.service');
    expect(value(metrics, 'Service', 'Restart')).toEqual(['on-failure']);
    expect(value(metrics, 'Install', 'WantedBy')).toEqual(['multi-user.target']);
    const receive = unitOf('walts-receive.service');
    expect(value(receive, 'Service', 'Restart')).toEqual(['on-failure']);
    // Exit 2 and 3 need a person (walts wal-receive --help): a restart would not change them.
    expect(value(receive, 'Service', 'RestartPreventExitStatus')).toEqual(['2 3']);
    for (const file of ['walts-backup.service', 'walts-restore-test.service']) {
      const s = unitOf(file).get('Service')!;
      expect({ file, nice: s.get('Nice'), io: s.get('IOSchedulingClass') }).toEqual({ file, nice: ['10'], io: ['best-effort'] });
    }
  });

  it('every timer is persistent, randomly delayed, and starts the service of its name', () => {
    for (const file of UNITS.filter((f) => f.endsWith('.timer'))) {
      const t = unitOf(file);
      expect({ file, persistent: value(t, 'Timer', 'Persistent'), delay: value(t, 'Timer', 'RandomizedDelaySec')?.length, wanted: value(t, 'Install', 'WantedBy') }).toEqual({
        file,
        persistent: ['true'],
        delay: 1,
        wanted: ['timers.target'],
      });
      expect(value(t, 'Timer', 'Unit')).toBeUndefined(); // the default: the .service of the same name
      expect(UNITS).toContain(file.replace(/\.timer$/, '.service'));
    }
  });

  const hasAnalyze = existsSync(ANALYZE);
  if (!hasAnalyze) console.warn(`${ANALYZE} is absent: skipping systemd-analyze verify of contrib/systemd/*`);
  (hasAnalyze ? it : it.skip)('systemd-analyze verify passes on every unit, without a warning, and fails on a broken one', async () => {
    const dir = await fsp.mkdtemp(join(tmpdir(), 'walts-units-'));
    try {
      for (const file of UNITS) {
        const text = await fsp.readFile(join(SYSTEMD_DIR, file), 'utf8');
        await fsp.writeFile(join(dir, file), text.split(INSTALLED_WALTS).join(WALTS_BIN));
      }
      const verify = async (file: string) => {
        const r = await run(ANALYZE, ['verify', join(dir, file)], { cwd: dir, timeoutMs: 60_000 });
        return { file, code: r.code, output: (r.stdout + r.stderr).trim() };
      };
      for (const file of UNITS) expect(await verify(file)).toEqual({ file, code: 0, output: '' });

      // The check catches what it must: a misspelt key (only a warning to systemd), a bad
      // calendar, and the unsubstituted walts path where walts is not installed.
      const backup = await fsp.readFile(join(dir, 'walts-backup.service'), 'utf8');
      await fsp.writeFile(join(dir, 'broken-key.service'), backup.replace('\nNice=10\n', '\nNicee=10\n'));
      expect((await verify('broken-key.service')).output).toMatch(/Unknown key/);
      await fsp.writeFile(join(dir, 'broken-calendar.timer'), (await fsp.readFile(join(dir, 'walts-backup.timer'), 'utf8')).replace(/OnCalendar=.*/, 'OnCalendar=nightly-ish'));
      await fsp.writeFile(join(dir, 'broken-calendar.service'), backup);
      expect(await verify('broken-calendar.timer')).not.toEqual({ file: 'broken-calendar.timer', code: 0, output: '' });
      if (!existsSync(INSTALLED_WALTS)) {
        await fsp.writeFile(join(dir, 'not-installed.service'), backup.split(WALTS_BIN).join(INSTALLED_WALTS));
        expect((await verify('not-installed.service')).output).toMatch(/not executable/);
      }
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });

  it('this walts accepts the command line of every unit and cron job', async () => {
    const lines = waltsCommandLines();
    expect(lines.map((l) => l.args[0])).toEqual(['backup-push', 'delete', 'metrics', 'wal-receive', 'restore-test', 'backup-push', 'restore-test', 'delete']);
    const help = await runWalts(['--help'], {}, { timeoutMs: 60_000 });
    const known = (cmd: string) => new RegExp(`^\\s+walts ${cmd}\\b`, 'm').test(help.stdout);
    const store = await fsp.mkdtemp(join(tmpdir(), 'walts-sched-store-'));
    try {
      const env = { WALTS_STORE: `file://${store}` };
      expect((await runWalts(['init'], env, { timeoutMs: 60_000 })).code).toBe(0);
      for (const { where, args } of lines) {
        expect({ where, known: known(args[0]!) }).toEqual({ where, known: true });
        // delete runs for real (as a dry run: without --confirm); the others show their help, which
        // yargs gives only for a command it knows.
        const r = args[0] === 'delete' ? await runWalts(args.filter((a) => a !== '--confirm'), env, { timeoutMs: 60_000 }) : await runWalts([args[0]!, '--help'], env, { timeoutMs: 60_000 });
        expect({ where, code: r.code, stderr: r.code === 0 ? '' : r.stderr }).toEqual({ where, code: 0, stderr: '' });
        if (args[0] === 'delete') expect(r.stdout).toMatch(/^delete window 7d: dry run/);
      }
    } finally {
      await fsp.rm(store, { recursive: true, force: true });
    }
  });

  it('docs/operations.md quotes the files exactly and names every one', () => {
    const doc = readFileSync(join(REPO_ROOT, 'docs', 'operations.md'), 'utf8');
    const quotes = [...doc.matchAll(/<!-- quoted verbatim from (\S+); [^>]*-->\n```[a-z]*\n([\s\S]*?)```\n/g)];
    expect(quotes.map((q) => q[1])).toEqual(['contrib/systemd/walts-backup.service', 'contrib/systemd/walts-backup.timer', 'contrib/cron/walts']);
    for (const [, path, body] of quotes) expect({ path, body }).toEqual({ path, body: readFileSync(join(REPO_ROOT, path!), 'utf8') });
    for (const file of UNITS.filter((f) => f.endsWith('.service'))) expect(doc).toContain(`contrib/systemd/${file}`);
  });
});
