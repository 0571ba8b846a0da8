'use strict';
// Runs s3rver in its own process for the tests (see test/helpers/s3server.ts). A child process because
// s3rver 3.7.1 encrypts ListObjectsV2 continuation tokens with DES, which Node 20's OpenSSL 3 only offers
// with --openssl-legacy-provider: without it every listing over 1000 keys answers 500.
// Usage: node --openssl-legacy-provider s3rver-child.js <directory> <bucket>; reports {port} over IPC.
const S3rver = require('s3rver');

const [directory, bucket] = process.argv.slice(2);
const server = new S3rver({
  address: '127.0.0.1',
  port: 0, // the kernel picks a free port: no race between choosing and binding
  directory,
  silent: true,
  configureBuckets: [{ name: bucket }],
});

server.run().then(
  ({ port }) => process.send({ port }),
  (err) => {
    process.send({ error: String(err && err.stack ? err.stack : err) });
    process.exit(1);
  },
);

// The parent (a jest worker) may die without stopping us: the IPC channel closing is our signal to go.
process.on('disconnect', () => process.exit(0));
