/** The configuration item: the settings load (one failed item listing every problem, never a crash). */
import type { Config } from '../../config';
import { UsageError } from '../../errors';
import { fail, message, ok, type CheckItem } from './item';

export function checkConfiguration(load: () => Config): { item: CheckItem; config?: Config } {
  try {
    const config = load();
    const encryption = config.pgp.publicKeyPath ? `encrypted to ${config.pgp.publicKeyPath}` : 'not encrypted (WALTS_PGP_PUBLIC_KEY unset)';
    return { item: ok('configuration', `store ${config.store.url}, compression ${config.compression}, ${encryption}${config.configFile ? `, from ${config.configFile}` : ''}`), config };
  } catch (err) {
    const problems = err instanceof UsageError ? err.problems : [message(err)];
    return { item: fail('configuration', problems.join('; '), 'fix each setting named (README.md "Configuration", walts --help); the store checks need it') };
  }
}
