#!/usr/bin/env node
'use strict';
// Builds the C++ worker of the installed mediasoup (3.8.4) when it is missing; a no-op when it
// exists. `.npmrc` sets ignore-scripts=true because mediasoup's own postinstall (`make -C worker`)
// fails on this toolchain; `npm run build` runs this script instead. See /work/shared/MEDIASOUP.md.
//
// Two fixes, written to a temp dir and handed to the build through the environment only (nothing
// inside node_modules is patched, so `npm ci` always starts from the pristine tarball):
//  1. The bundled gyp imports `collections.MutableSet` (gone in Python 3.10): a sitecustomize.py
//     on PYTHONPATH aliases the `collections.abc` names back onto `collections`.
//  2. The bundled abseil does `std::max(SIGSTKSZ, 65536)`; glibc >= 2.34 makes SIGSTKSZ a
//     non-constant expression: a header force-included through CXXFLAGS pins it to a constant.
//
// Env: MEDIASOUP_BUILD_JOBS (default: cores, at most 2), MEDIASOUP_FORCE_BUILD=1 (rebuild anyway).
// Plain Node, no dependencies: it runs before anything else is built.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');

const ROOT = path.resolve(__dirname, '..', '..');
const PREFIX = 'mediasoup-worker:';

function fail(message) {
  process.stderr.write(`${PREFIX} FAILED: ${message}\n`);
  process.exit(1);
}

function findMediasoup() {
  let pkgJson;
  try {
    pkgJson = require.resolve('mediasoup/package.json', { paths: [ROOT] });
  } catch {
    fail(`mediasoup is not installed under ${ROOT}/node_modules; run 'npm ci' first`);
  }
  const dir = path.dirname(pkgJson);
  const version = JSON.parse(fs.readFileSync(pkgJson, 'utf8')).version;
  return { dir, version };
}

const SITECUSTOMIZE = `# Written by ops/scripts/mediasoup-worker.js: mediasoup 3.8.4's bundled gyp still uses the
# collections ABC aliases removed in Python 3.10.
import collections
import collections.abc
for _name in dir(collections.abc):
    if not _name.startswith('_') and not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))
`;

const SIGSTKSZ_HEADER = `// Written by ops/scripts/mediasoup-worker.js: glibc >= 2.34 turns SIGSTKSZ into a runtime value,
// which breaks abseil's std::max(SIGSTKSZ, 65536) in mediasoup 3.8.4's bundled deps.
#ifndef MERIDIAN_MEDIASOUP_FIX_H
#define MERIDIAN_MEDIASOUP_FIX_H
#include <signal.h>
#ifdef __cplusplus
#include <limits>
#include <cstdint>
#endif
#undef SIGSTKSZ
#define SIGSTKSZ 16384
#endif
`;

function main() {
  const { dir, version } = findMediasoup();
  const binary = path.join(dir, 'worker', 'out', 'Release', 'mediasoup-worker');
  if (process.env.MEDIASOUP_WORKER_BIN) {
    process.stdout.write(
      `${PREFIX} MEDIASOUP_WORKER_BIN is set (${process.env.MEDIASOUP_WORKER_BIN}); not building\n`,
    );
    return;
  }
  if (fs.existsSync(binary) && process.env.MEDIASOUP_FORCE_BUILD !== '1') {
    process.stdout.write(`${PREFIX} already built (${path.relative(ROOT, binary)})\n`);
    return;
  }
  if (!version.startsWith('3.8.')) {
    // Later versions build with meson and download their deps: these fixes do not apply.
    fail(`expected mediasoup 3.8.x (it builds offline with gyp + make), found ${version} in ${dir}`);
  }
  for (const tool of ['make', 'python3', 'g++']) {
    const found = (process.env.PATH || '')
      .split(path.delimiter)
      .some((p) => p && fs.existsSync(path.join(p, tool)));
    if (!found) fail(`'${tool}' not found on PATH; install it (Debian: make python3 g++)`);
  }

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'meridian-mediasoup-'));
  fs.writeFileSync(path.join(tmp, 'sitecustomize.py'), SITECUSTOMIZE);
  const header = path.join(tmp, 'meridian-sigstksz.h');
  fs.writeFileSync(header, SIGSTKSZ_HEADER);

  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  const jobs = String(Number(process.env.MEDIASOUP_BUILD_JOBS) || Math.max(1, Math.min(2, cores)));
  const env = {
    ...process.env,
    PYTHON: 'python3',
    PYTHONPATH: [tmp, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter),
    CXXFLAGS: [process.env.CXXFLAGS, `-include ${header}`].filter(Boolean).join(' '),
    // worker/Makefile runs the inner make with -j$(CORES).
    CORES: jobs,
    MEDIASOUP_BUILDTYPE: 'Release',
  };
  delete env.MEDIASOUP_WORKER_BIN;

  const started = Date.now();
  const logFile = path.join(tmp, 'build.log');
  const log = fs.createWriteStream(logFile);
  process.stdout.write(
    `${PREFIX} building mediasoup ${version} worker (make -C worker, ${jobs} jobs; takes minutes; log ${logFile})\n`,
  );

  const child = spawn('make', ['-C', 'worker'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let compiled = 0;
  let lastLine = '';
  const tail = [];
  const onData = (chunk) => {
    log.write(chunk);
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line.trim()) continue;
      tail.push(line);
      if (tail.length > 40) tail.shift();
      const m = /^\s*(CXX|CC|AR|LINK|SOLINK|ACTION)\((?:target|host)\)\s+(\S+)/.exec(line);
      if (m) {
        compiled += 1;
        lastLine = `${m[1]} ${path.basename(m[2])}`;
      }
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);

  // A short progress line: a rewritten line on a TTY, one line every 20 s in CI logs.
  const tty = process.stdout.isTTY;
  const timer = setInterval(
    () => {
      const secs = Math.round((Date.now() - started) / 1000);
      const msg = `${PREFIX} ${secs}s, ${compiled} steps, ${lastLine}`;
      process.stdout.write(tty ? `\r${msg.slice(0, (process.stdout.columns || 100) - 1)}\x1b[K` : `${msg}\n`);
    },
    tty ? 1000 : 20000,
  );

  const stop = (signal) => {
    child.kill(signal);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);

  child.on('error', (err) => {
    clearInterval(timer);
    fail(`cannot run make: ${err.message}`);
  });
  child.on('close', (code, signal) => {
    clearInterval(timer);
    log.end();
    if (tty) process.stdout.write('\n');
    const secs = Math.round((Date.now() - started) / 1000);
    if (code === 0 && fs.existsSync(binary)) {
      process.stdout.write(`${PREFIX} built ${path.relative(ROOT, binary)} in ${secs}s\n`);
      fs.rmSync(tmp, { recursive: true, force: true });
      return;
    }
    process.stderr.write(tail.map((l) => `  | ${l}\n`).join(''));
    fail(
      `make -C worker in ${dir} ${signal ? `was killed by ${signal}` : `exited with ${code}`} after ${secs}s` +
        (code === 0 ? ` but ${binary} is missing` : '') +
        `; full log: ${logFile}`,
    );
  });
}

main();
