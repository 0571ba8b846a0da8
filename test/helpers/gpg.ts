/**
 * Test helper: OpenPGP key pairs made by the real `gpg` (GnuPG 2.2), used as the independent
 * encoder/decoder in interop tests (walts encrypts with openpgp.js, gpg must decrypt, and back).
 *
 * Each makeGpgKeys() call gets its own temp dir:
 *   <dir>/home/          gpg --homedir (0700, owned by the test process user)
 *   <dir>/keys/          public.asc, secret.asc, passphrase (files 0600, dir 0700). When the test
 *                        process is root these are chowned to `postgres`, so walts running from
 *                        archive_command/restore_command (as postgres) can read them; root still can.
 * cleanup() runs `gpgconf --homedir <home> --kill all` (no gpg-agent left behind) and removes <dir>.
 * A watchdog process kills the agent if the test process dies without calling cleanup().
 *
 * SPEED: generating rsa3072 (primary + encryption subkey) takes ~2-4 s. Key material is therefore
 * cached (per algo + passphrase) in memory and on disk in <tmpdir>/walts-test-gpg-cache-<uid>/ (0700),
 * and each call imports the cached secret key into a fresh homedir (~10 ms). So by default every call
 * returns the SAME key pair; pass { fresh: true } for a distinct one (e.g. a "wrong key" test).
 * WALTS_TEST_GPG_NO_CACHE=1 disables the disk cache.
 *
 * Keys: primary `<algo>` sign/cert + encryption subkey (rsa3072 for rsa3072, cv25519 for ed25519):
 * `gpg --quick-gen-key UID rsa3072 default never` creates only a sign/cert primary ("scSC"), so the
 * encryption subkey must always be added with --quick-add-key.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { isRoot, lookupUser, run, RunResult, runWhenThisProcessDies } from './run';

export type GpgAlgo = 'rsa3072' | 'ed25519';

export interface GpgKeys {
  /** gpg --homedir holding the secret key. */
  home: string;
  /** Armored public key (the one walts encrypts to). */
  publicKeyPath: string;
  /** Armored secret key (the one walts decrypts with; protected by the passphrase if one is set). */
  privateKeyPath: string;
  /** File containing the passphrase (no trailing newline), when a passphrase was requested. */
  passphraseFile?: string;
  passphrase?: string;
  /** Primary key fingerprint (40 hex chars, upper case). */
  fingerprint: string;
  algo: GpgAlgo;
  /** gpg --decrypt inFile > outFile with this key; throws with gpg's stderr on failure. */
  decrypt(inFile: string, outFile: string): Promise<void>;
  /** gpg --decrypt from a buffer; never throws: inspect code/stderr (e.g. to assert a failure). */
  decryptRun(data: Buffer): Promise<RunResult>;
  /** gpg --encrypt -r FPR (binary, not armored) inFile > outFile. */
  encrypt(inFile: string, outFile: string): Promise<void>;
  cleanup(): Promise<void>;
}

export const GPG_UID = 'walts test <test@walts.invalid>';

interface KeyMaterial {
  publicArmored: string;
  secretArmored: string;
  fingerprint: string;
}

/** Watchdogs (see run.ts runWhenThisProcessDies) that kill a homedir's gpg-agent if we die first. */
const watchdogs = new Map<string, () => void>();
function guardHome(home: string): void {
  watchdogs.set(home, runWhenThisProcessDies('gpgconf', ['--homedir', home, '--kill', 'all']));
}

function gpgEnv(): Record<string, string> {
  // Keep the developer's GNUPGHOME / agent out of it: every call passes --homedir explicitly.
  return { GNUPGHOME: '', GPG_AGENT_INFO: '' };
}

async function gpg(home: string, args: string[], input?: Buffer | string): Promise<RunResult> {
  return run('gpg', ['--homedir', home, '--batch', '--no-tty', '--quiet', ...args], {
    env: gpgEnv(),
    input,
    timeoutMs: 120_000,
  });
}

async function gpgOk(home: string, args: string[], input?: Buffer | string): Promise<RunResult> {
  const r = await gpg(home, args, input);
  if (r.code !== 0) {
    throw new Error(`gpg ${args.join(' ')} failed (code=${r.code}${r.timedOut ? ' TIMEOUT' : ''}): ${r.stderr}`);
  }
  return r;
}

async function killAgent(home: string): Promise<void> {
  await run('gpgconf', ['--homedir', home, '--kill', 'all'], { env: gpgEnv(), timeoutMs: 20_000 });
  watchdogs.get(home)?.();
  watchdogs.delete(home);
}

function passArgs(passphraseFile: string | undefined): string[] {
  return passphraseFile
    ? ['--pinentry-mode', 'loopback', '--passphrase-file', passphraseFile]
    : ['--pinentry-mode', 'loopback', '--passphrase', ''];
}

function fingerprintOf(colons: string): string {
  const fpr = colons
    .split('\n')
    .find((l) => l.startsWith('fpr:'))
    ?.split(':')[9];
  if (!fpr) throw new Error(`no fingerprint in gpg output:\n${colons}`);
  return fpr;
}

/** Generate a brand new key pair (slow for rsa3072). */
async function generate(algo: GpgAlgo, passphrase: string | undefined): Promise<KeyMaterial> {
  const tmp = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'walts-gpggen-'));
  const home = path.join(tmp, 'home');
  await fs.promises.mkdir(home, { mode: 0o700 });
  guardHome(home);
  try {
    let pf: string | undefined;
    if (passphrase !== undefined) {
      pf = path.join(tmp, 'pass');
      await fs.promises.writeFile(pf, passphrase, { mode: 0o600 });
    }
    await gpgOk(home, [...passArgs(pf), '--quick-gen-key', GPG_UID, algo, 'default', 'never']);
    const fingerprint = fingerprintOf((await gpgOk(home, ['--with-colons', '--list-secret-keys'])).stdout);
    await gpgOk(home, [...passArgs(pf), '--quick-add-key', fingerprint, algo === 'ed25519' ? 'cv25519' : 'rsa3072', 'encr', 'never']);
    const publicArmored = (await gpgOk(home, ['--armor', '--export', fingerprint])).stdout;
    const secretArmored = (await gpgOk(home, [...passArgs(pf), '--armor', '--export-secret-keys', fingerprint])).stdout;
    if (!publicArmored.includes('BEGIN PGP PUBLIC KEY BLOCK') || !secretArmored.includes('BEGIN PGP PRIVATE KEY BLOCK')) {
      throw new Error('gpg export produced no key');
    }
    return { publicArmored, secretArmored, fingerprint };
  } finally {
    await killAgent(home).catch(() => undefined);
    await fs.promises.rm(tmp, { recursive: true, force: true });
  }
}

const memCache = new Map<string, Promise<KeyMaterial>>();

function cacheDir(): string {
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  return path.join(os.tmpdir(), `walts-test-gpg-cache-${uid}`);
}

async function cachedMaterial(algo: GpgAlgo, passphrase: string | undefined): Promise<KeyMaterial> {
  const key = createHash('sha256')
    .update(`v1\0${GPG_UID}\0${algo}\0${passphrase === undefined ? '-' : `+${passphrase}`}`)
    .digest('hex')
    .slice(0, 24);
  let p = memCache.get(key);
  if (!p) {
    p = (async () => {
      const useDisk = process.env.WALTS_TEST_GPG_NO_CACHE !== '1';
      const file = path.join(cacheDir(), `${algo}-${key}.json`);
      if (useDisk) {
        try {
          const st = await fs.promises.lstat(cacheDir());
          // Only trust a cache dir that is ours and private.
          if (st.isDirectory() && st.uid === (process.getuid?.() ?? st.uid) && (st.mode & 0o077) === 0) {
            const m = JSON.parse(await fs.promises.readFile(file, 'utf8')) as KeyMaterial;
            if (m.publicArmored && m.secretArmored && /^[0-9A-F]{40,64}$/.test(m.fingerprint)) return m;
          }
        } catch {
          /* miss */
        }
      }
      const m = await generate(algo, passphrase);
      if (useDisk) {
        try {
          await fs.promises.mkdir(cacheDir(), { mode: 0o700, recursive: true });
          const tmp = `${file}.${process.pid}.tmp`;
          await fs.promises.writeFile(tmp, JSON.stringify(m), { mode: 0o600 });
          await fs.promises.rename(tmp, file);
        } catch {
          /* cache is optional */
        }
      }
      return m;
    })();
    memCache.set(key, p);
    p.catch(() => memCache.delete(key));
  }
  return p;
}

export async function makeGpgKeys(
  opts: {
    passphrase?: string;
    algo?: GpgAlgo;
    /** Generate a new, distinct key pair instead of the cached one. */
    fresh?: boolean;
    /** Chown the key files to postgres (default: true when running as root). */
    forPostgres?: boolean;
  } = {},
): Promise<GpgKeys> {
  const algo = opts.algo ?? 'rsa3072';
  const passphrase = opts.passphrase;
  const material = opts.fresh ? await generate(algo, passphrase) : await cachedMaterial(algo, passphrase);

  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'walts-gpg-'));
  await fs.promises.chmod(dir, 0o755); // let postgres traverse into keys/
  const home = path.join(dir, 'home');
  const keysDir = path.join(dir, 'keys');
  await fs.promises.mkdir(home, { mode: 0o700 });
  await fs.promises.mkdir(keysDir, { mode: 0o700 });
  guardHome(home);

  const publicKeyPath = path.join(keysDir, 'public.asc');
  const privateKeyPath = path.join(keysDir, 'secret.asc');
  await fs.promises.writeFile(publicKeyPath, material.publicArmored, { mode: 0o600 });
  await fs.promises.writeFile(privateKeyPath, material.secretArmored, { mode: 0o600 });
  let passphraseFile: string | undefined;
  if (passphrase !== undefined) {
    passphraseFile = path.join(keysDir, 'passphrase');
    await fs.promises.writeFile(passphraseFile, passphrase, { mode: 0o600 });
  }
  if (opts.forPostgres ?? isRoot()) {
    if (isRoot()) {
      const { uid, gid } = lookupUser('postgres');
      for (const p of [keysDir, publicKeyPath, privateKeyPath, ...(passphraseFile ? [passphraseFile] : [])]) {
        await fs.promises.chown(p, uid, gid);
      }
    }
  }

  // Importing a protected secret key needs no passphrase in GnuPG >= 2.1 (it is stored as is).
  await gpgOk(home, ['--import', privateKeyPath]);

  const decryptArgs = ['--yes', ...passArgs(passphraseFile)];
  const keys: GpgKeys = {
    home,
    publicKeyPath,
    privateKeyPath,
    passphraseFile,
    passphrase,
    fingerprint: material.fingerprint,
    algo,
    async decrypt(inFile, outFile) {
      await gpgOk(home, [...decryptArgs, '--output', outFile, '--decrypt', inFile]);
    },
    decryptRun(data) {
      return gpg(home, [...decryptArgs, '--decrypt'], data);
    },
    async encrypt(inFile, outFile) {
      await gpgOk(home, ['--yes', '--trust-model', 'always', '--recipient', material.fingerprint, '--output', outFile, '--encrypt', inFile]);
    },
    async cleanup() {
      await killAgent(home).catch(() => undefined);
      await fs.promises.rm(dir, { recursive: true, force: true });
    },
  };
  return keys;
}

/**
 * A public key that cannot encrypt, made by the real gpg: a sign-only ed25519 primary key with no
 * encryption subkey (what `gpg --quick-gen-key UID ed25519 sign` gives). Written armored to a file
 * readable by postgres when root, in a fresh temp dir that cleanup() removes.
 */
export async function makeSignOnlyPublicKey(): Promise<{ publicKeyPath: string; cleanup(): Promise<void> }> {
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'walts-gpg-signonly-'));
  await fs.promises.chmod(dir, 0o755);
  const home = path.join(dir, 'home');
  await fs.promises.mkdir(home, { mode: 0o700 });
  guardHome(home);
  await gpgOk(home, [...passArgs(undefined), '--quick-gen-key', 'walts sign-only <signonly@walts.invalid>', 'ed25519', 'sign', 'never']);
  const publicKeyPath = path.join(dir, 'signonly.asc');
  await fs.promises.writeFile(publicKeyPath, (await gpgOk(home, ['--armor', '--export'])).stdout, { mode: 0o644 });
  return {
    publicKeyPath,
    async cleanup() {
      await killAgent(home).catch(() => undefined);
      await fs.promises.rm(dir, { recursive: true, force: true });
    },
  };
}
