/**
 * `meridian media --node ID --site SITE --controller HOST:PORT [--workers N] [--rtp-ip IP]
 * [--announced-ip IP] [--rtp-ports MIN-MAX] [--max-sessions-per-worker N]`, with
 * MERIDIAN_AGENT_TOKEN in the environment: runs a media node registered with the controller until
 * SIGINT/SIGTERM (exit 0 after a clean shutdown), or until the controller refuses it for good (1).
 */
import * as net from 'node:net';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { ControllerLink } from './controller-link';
import { isMediaError } from './errors';
import { MediaNode, mediasoupWorkerBin } from './media-node';

const USAGE = `usage: meridian media --node ID --site SITE --controller HOST:PORT [options]

Runs a mediasoup media node steered by the controller. MERIDIAN_AGENT_TOKEN must be set.

options:
  --node ID                     node id (unique among media nodes)
  --site SITE                   topology site the node sits at
  --controller HOST:PORT        controller gRPC address
  --workers N                   mediasoup workers (default: one per core)
  --rtp-ip IP                   address the RTP transports listen on (default 127.0.0.1)
  --announced-ip IP             address announced to peers and sources instead of --rtp-ip
  --rtp-ports MIN-MAX           UDP port range of the transports (default 10000-59999)
  --max-sessions-per-worker N   capacity limit per worker (default 500)
  -h, --help                    this text
`;

class UsageError extends Error {}

interface Parsed {
  node: string;
  site: string;
  controller: string;
  workers: number | undefined;
  rtpIp: string;
  announcedIp: string | undefined;
  rtpPorts: { min: number; max: number } | undefined;
  maxSessionsPerWorker: number | undefined;
  token: string;
}

function positiveInt(flag: string, v: string | undefined, max = 1_000_000): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > max) {
    throw new UsageError(`${flag} must be an integer 1-${max}, got '${v}'`);
  }
  return Number(v);
}

function parse(argv: string[]): Parsed | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        node: { type: 'string' },
        site: { type: 'string' },
        controller: { type: 'string' },
        workers: { type: 'string' },
        'rtp-ip': { type: 'string' },
        'announced-ip': { type: 'string' },
        'rtp-ports': { type: 'string' },
        'max-sessions-per-worker': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  if (values.help === true) return 'help';
  for (const flag of ['node', 'site', 'controller'] as const) {
    if (values[flag] === undefined || values[flag] === '') throw new UsageError(`--${flag} is required`);
  }
  const node = values.node as string;
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(node)) {
    throw new UsageError(`--node must be 1-64 letters, digits, '.', '_' or '-', got '${node}'`);
  }
  const controller = values.controller as string;
  const m = /^(.+):(\d{1,5})$/.exec(controller);
  if (m === null || Number(m[2]) < 1 || Number(m[2]) > 65535) {
    throw new UsageError(`--controller must be HOST:PORT, got '${controller}'`);
  }
  const rtpIp = values['rtp-ip'] ?? '127.0.0.1';
  if (net.isIP(rtpIp) === 0) throw new UsageError(`--rtp-ip must be an IP address, got '${rtpIp}'`);
  const announcedIp = values['announced-ip'];
  if (announcedIp !== undefined && net.isIP(announcedIp) === 0) {
    throw new UsageError(`--announced-ip must be an IP address, got '${announcedIp}'`);
  }
  let rtpPorts: Parsed['rtpPorts'];
  const range = values['rtp-ports'];
  if (range !== undefined) {
    const r = /^(\d{1,5})-(\d{1,5})$/.exec(range);
    const min = Number(r?.[1]);
    const max = Number(r?.[2]);
    if (r === null || min < 1024 || max > 65535 || min > max) {
      throw new UsageError(`--rtp-ports must be MIN-MAX within 1024-65535 with MIN <= MAX, got '${range}'`);
    }
    rtpPorts = { min, max };
  }
  const token = process.env.MERIDIAN_AGENT_TOKEN ?? '';
  if (token === '') throw new UsageError('MERIDIAN_AGENT_TOKEN is not set in the environment');
  return {
    node,
    site: values.site as string,
    controller,
    workers: positiveInt('--workers', values.workers, 256),
    rtpIp,
    announcedIp,
    rtpPorts,
    maxSessionsPerWorker: positiveInt('--max-sessions-per-worker', values['max-sessions-per-worker']),
    token,
  };
}

/** The `meridian media` command; resolves to the process exit code. */
export async function commandMedia(argv: string[]): Promise<number> {
  let args: Parsed | 'help';
  try {
    args = parse(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`meridian media: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
  }
  if (args === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const bin = mediasoupWorkerBin();
  if (!bin.exists) {
    process.stderr.write(
      `meridian media: the mediasoup worker is not built (${bin.path}); run 'npm run build'\n`,
    );
    return 1;
  }
  const log = pino({ level: process.env.MERIDIAN_LOG_LEVEL ?? 'info' }).child({
    service: 'media',
    node: args.node,
  });
  let node: MediaNode;
  try {
    node = await MediaNode.create({
      nodeId: args.node,
      site: args.site,
      rtpIp: args.rtpIp,
      log,
      ...(args.workers === undefined ? {} : { workers: args.workers }),
      ...(args.announcedIp === undefined ? {} : { announcedIp: args.announcedIp }),
      ...(args.rtpPorts === undefined ? {} : { rtpPorts: args.rtpPorts }),
      ...(args.maxSessionsPerWorker === undefined ? {} : { maxSessionsPerWorker: args.maxSessionsPerWorker }),
    });
  } catch (err) {
    process.stderr.write(
      `meridian media: ${isMediaError(err) ? `${err.code}: ${err.message}` : String(err)}\n`,
    );
    return 1;
  }
  const workers = node.workerPids().length;
  const link = new ControllerLink({
    node,
    address: args.controller,
    token: args.token,
    rtpIp: args.announcedIp ?? args.rtpIp,
    workers,
    log,
    ...(args.rtpPorts === undefined ? {} : { rtpPorts: args.rtpPorts }),
  });
  log.info({ workers, pids: node.workerPids(), controller: args.controller }, 'media node running');

  return new Promise<number>((resolve) => {
    let done = false;
    const finish = (code: number, why: string): void => {
      if (done) return;
      done = true;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      log.info({ why }, 'media node stopping');
      link.close();
      node.close();
      resolve(code);
    };
    const onSignal = (signal: NodeJS.Signals): void => finish(0, signal);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    link.on('refused', (r) => {
      if (!r.retry) finish(1, `refused by the controller: ${r.code} ${r.message}`);
    });
    link.start();
  });
}
