#!/usr/bin/env node
'use strict';
// The AWS SDK warns about Node.js versions on stderr, which is PostgreSQL's log here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

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
