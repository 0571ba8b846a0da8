/**
 * walts.1 is generated from the parser's --help (scripts/man.ts) and committed, because it ships in
 * the package (package.json "man"): it must never drift from what `walts --help` says.
 */
import { readFileSync } from 'node:fs';
import { MAN_PATH, renderManPage } from '../../../scripts/man';
import { COMMANDS } from '../../../src/cli/parser';

describe('man page', () => {
  it('walts.1 is what scripts/man.ts renders from --help today (run npm run man when this fails)', async () => {
    expect(readFileSync(MAN_PATH, 'utf8')).toBe(await renderManPage());
  });

  it('has a section for every command and is listed in package.json', async () => {
    const page = readFileSync(MAN_PATH, 'utf8');
    for (const c of COMMANDS) expect(page).toContain(`\n.SS ${String(c.command).split(' ')[0]}\n`);
    const pkg = JSON.parse(readFileSync(require.resolve('../../../package.json'), 'utf8')) as { man: string[]; files: string[] };
    expect(pkg.man).toEqual(['./walts.1']);
    expect(pkg.files).toContain('walts.1');
  });
});
