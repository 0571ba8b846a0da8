#!/usr/bin/env node
'use strict';
// The AWS SDK warns on stderr (PostgreSQL's log here) that its releases from 2027 need Node.js 22:
// true of Node.js 20 only, where walts still runs (docs/install.md); from 22 on there is nothing to
// silence, so nothing is.
if (Number(process.versions.node.split('.')[0]) < 22) process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

require('../dist/main.js')
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
