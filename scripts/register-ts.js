// Lets `node -r ./scripts/register-ts.js scripts/x.ts` run TypeScript scripts (and the test helpers
// they reuse) without a build step: each .ts file is transpiled on load with the TypeScript compiler
// already installed as a dev dependency. Type-checking is `npm run typecheck`'s job.
'use strict';
const fs = require('node:fs');
const ts = require('typescript');

require.extensions['.ts'] = function compileTs(module, filename) {
  const { outputText } = ts.transpileModule(fs.readFileSync(filename, 'utf8'), {
    fileName: filename,
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, sourceMap: false },
  });
  module._compile(outputText, filename);
};
