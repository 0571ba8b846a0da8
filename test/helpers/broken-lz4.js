// Preloaded with NODE_OPTIONS=--require into a walts process under test: the lz4 package's native
// addons (build/Release/lz4.node, xxhash.node) fail to load exactly as an addon built for another
// Node.js version does after an upgrade: dlopen refuses it, ERR_DLOPEN_FAILED, when lz4 is required.
'use strict';
const Module = require('module');
const load = Module._load;
Module._load = function (request, parent, ...rest) {
  if (/[\\/]build[\\/]Release[\\/](lz4|xxhash)(\.node)?$/.test(request) && /[\\/]node_modules[\\/]lz4[\\/]/.test(parent?.filename ?? '')) {
    const err = new Error(
      `The module '${request}.node' was compiled against a different Node.js version using NODE_MODULE_VERSION 108. This version of Node.js requires NODE_MODULE_VERSION ${process.versions.modules}. Please try re-compiling or re-installing the module (for instance, using \`npm rebuild\` or \`npm install\`).`,
    );
    err.code = 'ERR_DLOPEN_FAILED';
    throw err;
  }
  return load.call(this, request, parent, ...rest);
};
