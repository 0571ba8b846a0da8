/**
 * Test-only preload (`NODE_OPTIONS=--require .../holdUpload.js`) for a walts process: holds the first
 * upload of a WAL segment other than HOLD_OWN (i.e. a look-ahead upload) in flight forever, and
 * writes that segment's name to HOLD_MARKER once it is held, so that a test can SIGKILL walts at
 * exactly that moment instead of hoping to hit it.
 *
 * - File store: the publish (link or rename into `.../walts_v1/wal/...`) never completes.
 * - S3: the PUT is sent to a local socket that accepts and never answers.
 *
 * Plain JavaScript: it runs before anything is compiled. Production code has no seam for this.
 */
'use strict';
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');

const own = process.env.HOLD_OWN ?? '';
const marker = process.env.HOLD_MARKER;
const SEGMENT = /\/walts_v1\/wal\/[0-9A-F]{16}\/([0-9A-F]{24})(?:[.?][^/]*)?$/;
let held = false;

/** The segment `target` publishes, when it is the one to hold. */
function toHold(target) {
  if (held || !marker) return undefined;
  const m = SEGMENT.exec(String(target));
  if (!m || m[1] === own) return undefined;
  held = true;
  return m[1];
}

// A promise that never settles does not keep Node alive by itself: a timer does, so the process
// stays, held, until the test kills it (otherwise it could exit 0 on an empty event loop).
const never = () => new Promise(() => setInterval(() => undefined, 1 << 30));
for (const name of ['link', 'rename']) {
  const original = fs.promises[name];
  fs.promises[name] = function (from, to, ...rest) {
    const segment = toHold(to);
    if (segment === undefined) return original.call(this, from, to, ...rest);
    fs.writeFileSync(marker, segment);
    return never();
  };
}

const blackHole = net.createServer(() => undefined);
blackHole.listen(0, '127.0.0.1');
blackHole.unref();
const request = http.request;
http.request = function (options, ...rest) {
  const segment = typeof options === 'object' && options && options.method === 'PUT' ? toHold(String(options.path).split('?')[0]) : undefined;
  if (segment === undefined) return request.call(this, options, ...rest);
  const req = request.call(this, { ...options, host: '127.0.0.1', hostname: '127.0.0.1', port: blackHole.address().port, agent: false }, ...rest);
  req.once('socket', (socket) => socket.once('connect', () => fs.writeFileSync(marker, segment)));
  return req;
};
