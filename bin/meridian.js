#!/usr/bin/env node
'use strict';
// The `meridian` command: a thin dispatcher. Each subcommand lives in the package that owns it
// (see DESIGN.md) and is loaded lazily, so `meridian validate` never loads mediasoup or gRPC.
// Every package exports `commands: Record<string, (argv: string[]) => Promise<number>>` from its
// index; the promise resolves to the process exit code.

const OWNERS = {
  validate: '@meridian/topology',
  routes: '@meridian/topology',
  controller: '@meridian/controller',
  agent: '@meridian/edge-agent',
  media: '@meridian/media',
  lab: '@meridian/ops',
  start: '@meridian/ops',
};

const USAGE = `usage: meridian <command> [options]

commands:
  validate FILE                 check a topology file, print a summary or every error
  routes --topology FILE ...    compute application-aware routes (see README)
  controller [options]          run the controller (gRPC for agents, HTTP API)
  agent --site ID --controller HOST:PORT
                                run an edge agent
  media --node ID --site SITE --controller HOST:PORT
                                run a mediasoup media node
  lab up|down|status|fault ...  network-namespace lab (root)
  start                         the quick-start: lab as root, loopback otherwise

Run 'meridian <command> --help' for a command's options.`;

async function main() {
  const [cmd, ...argv] = process.argv.slice(2);
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(USAGE + '\n');
    return cmd === undefined ? 2 : 0;
  }
  const owner = Object.prototype.hasOwnProperty.call(OWNERS, cmd) ? OWNERS[cmd] : undefined;
  if (owner === undefined) {
    process.stderr.write(`meridian: unknown command '${cmd}'\n\n${USAGE}\n`);
    return 2;
  }
  let mod;
  try {
    mod = require(owner);
  } catch (err) {
    process.stderr.write(
      `meridian: cannot load ${owner} (${err && err.message}); run 'npm ci && npm run build' first\n`,
    );
    return 1;
  }
  const handler = mod.commands && mod.commands[cmd];
  if (typeof handler !== 'function') {
    process.stderr.write(`meridian: '${cmd}' is not available in this build of ${owner}\n`);
    return 1;
  }
  return handler(argv);
}

main().then(
  (code) => {
    process.exitCode = typeof code === 'number' ? code : 0;
  },
  (err) => {
    process.stderr.write(`meridian: internal error: ${err && err.stack ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  },
);
