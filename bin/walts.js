#!/usr/bin/env node
'use strict';
// The AWS SDK warns on stderr (PostgreSQL's log here) that its releases from 2027 need Node.js 22:
// true of Node.js 20 only, where walts still runs (docs/install.md); from 22 on there is nothing to
// silence, so nothing is.
if (Number(process.versions.node.split('.')[0]) < 22) process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

let entry;
try {
  entry = require('../dist/main.js');
} catch (err) {
  // A clone installed without its dev dependencies has no dist/ (scripts/prepare.js): say so, not a stack.
  if (err.code !== 'MODULE_NOT_FOUND' || !String(err.message).includes('dist/main.js')) throw err;
  process.stderr.write('walts: dist/ is not built here: run npm ci (or npm run build) in the walts directory, or install the tarball of npm pack (docs/install.md)\n');
  process.exit(2);
}
entry
  .main(process.argv.slice(2))
  .then(({ exitCode, signal }) => {
    if (signal) {
      // Die by the same signal so PostgreSQL sees what happened (never "exit 1 = not found").
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
      return;
    }
    process.exitCode = exitCode;
  });
