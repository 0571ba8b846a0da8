/**
 * wal-push and wal-fetch start once per 16 MiB of WAL: loading the CLI must not pull in the database
 * driver, the AWS SDK, openpgp or the LZ4 addon. They are loaded when a command first needs them.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

it('loading the CLI does not load pg, the AWS SDK, openpgp or lz4', () => {
  const root = join(__dirname, '../..');
  const script = `require('./src/main'); const heavy = Object.keys(require.cache).filter((k) => /node_modules\\/(pg|openpgp|@aws-sdk|lz4)\\//.test(k)); process.stdout.write(JSON.stringify(heavy));`;
  const out = execFileSync(process.execPath, ['-r', './scripts/register-ts.js', '-e', script], { cwd: root, encoding: 'utf8' });
  expect(JSON.parse(out)).toEqual([]);
});
