import type { CommandModule } from 'yargs';
import type { ArchiveEncryption } from '../archive/archive';
import { ARCHIVE_KEY } from '../archive/layout';
import { loadPublicKeys } from '../codec/pgp';
import { init } from '../ops/init';
import { readClusterIdentity } from '../postgres/controlFile';
import { runCommand } from './run';

export const initCommand: CommandModule<object, { pgdata?: string }> = {
  command: 'init',
  describe: 'create the archive at WALTS_STORE (once, before archive_command runs)',
  builder: (y) =>
    y
      .option('pgdata', { type: 'string', describe: "a cluster's data directory: record that cluster as the archive's owner now" })
      .example('mkdir -p /srv/walts/db1 && walts init', 'a directory store (the directory, or the mounted share, must exist)')
      .example('WALTS_STORE=s3://backups/db1 WALTS_PGP_PUBLIC_KEY=/etc/walts/pub.asc walts init --pgdata $PGDATA', 'an encrypted archive in an existing bucket, claimed for this cluster')
      .epilogue(
        `Writes ${ARCHIVE_KEY}: the proof that an archive exists there, whether it is encrypted (with
the public key fingerprints of WALTS_PGP_PUBLIC_KEY), and, on S3, whether the service honours
conditional create. Every other command refuses a location without it, so a missing, unmounted or
mistyped store is an error, never an empty archive. init never creates the directory or bucket.
On an existing archive init changes nothing and says so (safe to run from provisioning), except
that running it with WALTS_PGP_PUBLIC_KEY on an unencrypted archive records that the archive is
encrypted from now on (one way: writers without the key are refused afterwards).
An archive made before walts init existed (it has walts_v1/cluster.json) keeps working; init adopts it.
Exit status:
  0  archive created, adopted, or already there
  2  bad option or configuration (unreadable public key, --pgdata not a data directory)
  3  --pgdata is a different cluster from the one that owns the archive
  4  store unavailable: the directory or bucket does not exist, access denied, unreachable`,
      ) as never,
  handler: (argv) =>
    runCommand('init', argv, async ({ deps, config, signal }) => {
      const keyPath = config.pgp.publicKeyPath;
      const encryption: ArchiveEncryption = keyPath
        ? { method: 'openpgp', fingerprints: (await loadPublicKeys(keyPath)).map((k) => k.getFingerprint().toLowerCase()) }
        : { method: 'none' };
      const cluster = argv.pgdata ? await readClusterIdentity(argv.pgdata) : undefined;
      const r = await init(deps, { encryption, cluster, signal });
      const where = deps.storage.description;
      const lines =
        r.outcome === 'exists'
          ? [`walts: ${where} is already an archive (created ${r.record.created_at} by ${r.record.created_by}); nothing to do`]
          : [`walts: ${r.outcome === 'adopted' ? 'adopted the existing archive' : 'created an archive'} at ${where} (encryption: ${r.record.encryption.method})`];
      for (const c of r.changes) lines.push(`walts: ${c}`);
      process.stdout.write(lines.join('\n') + '\n');
      return { outcome: r.outcome, encryption: r.record.encryption.method, changes: r.changes.length, ...(r.systemIdentifier ? { system_identifier: r.systemIdentifier } : {}) };
    }),
};
