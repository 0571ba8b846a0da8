#!/usr/bin/env node
// npm's `prepare` hook: builds dist/ with tsc, a dev dependency.
// - A clone + `npm ci` (developers, CI, the README's quick start): typescript is there, dist/ is built.
// - `npm pack` / `npm publish`: dist/ is rebuilt from scratch (no file of a deleted source survives
//   into the tarball); without typescript this fails, because a tarball must never ship a stale or
//   missing dist/.
// - `npm ci --omit=dev` in a clone (a production install that skips the dev toolchain): typescript
//   is absent, so nothing is built and the install succeeds; walts then runs from a dist/ built
//   earlier (`npm ci && npm prune --omit=dev`), or says how to get one. Installing the tarball from
//   `npm pack` never runs this hook: its dist/ is inside it (docs/install.md).
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const packing = ['pack', 'publish'].includes(process.env.npm_command ?? '');
let tsc;
try {
  tsc = require.resolve('typescript/bin/tsc', { paths: [root] });
} catch {
  if (packing) {
    console.error('walts: npm pack needs the dev dependencies (typescript) to build dist/: run npm ci first');
    process.exit(1);
  }
  if (!fs.existsSync(path.join(root, 'dist', 'main.js'))) {
    console.error('walts: dev dependencies omitted, so dist/ is not built; walts cannot run from this directory.');
    console.error('walts: build on a machine with them (npm ci && npm prune --omit=dev), or install the tarball of npm pack (docs/install.md)');
  }
  process.exit(0);
}
if (packing) fs.rmSync(path.join(root, 'dist'), { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
