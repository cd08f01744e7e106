/**
 * End to end: 1,000 agent streams simulated from this process over real gRPC (loopback) -> the
 * controller in a child process (`meridian controller`) -> estimator -> Redis and InfluxDB
 * (private servers from @meridian/ops). Reports controller CPU (utime+stime from
 * /proc/<pid>/stat over the window) and RSS (VmRSS), and the ingest rate measured at the
 * controller (sum of `samples` in /api/v1/links).
 *
 * Phases:
 * - `nominal`: every agent reports once a second, 2 links x 10 samples (100 ms probes):
 *   20,000 samples/s offered, the real load of 1,000 sites;
 * - `saturation`: every stream sends as fast as gRPC flow control lets it (100 samples/link
 *   per report): the most the controller ingests.
 * Baseline in the same run: an idle controller with the 1,000 streams connected (CPU, RSS).
 *
 * Reports are pre-encoded (identity serialisation on the client) so the load generator is cheap.
 * Run: `npm run bench -w controller` (e2e part) or `node controller/dist/bench/e2e.js`.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { MERIDIAN_PROTO_PATH, PROTO_LOADER_OPTIONS } from '../src/index';
import { syntheticTopology } from './fixtures';

interface ServiceLike {
  readonly url: string;
  dispose(): Promise<void>;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const ops = require('@meridian/ops') as {
  startRedis(): Promise<ServiceLike>;
  startInflux(): Promise<ServiceLike>;
};

const AGENTS = Number(process.env.BENCH_AGENTS ?? 1000);
const CHANNELS = 10;
const PHASE_S = Number(process.env.BENCH_SECONDS ?? 10);
const API = 'bench-api';
const AGENT = 'bench-agent';
const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'meridian.js');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function procStat(pid: number): { cpuS: number; rssMb: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(f[11]) + Number(f[12]); // utime + stime (fields 14, 15)
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
  return { cpuS: ticks / 100, rssMb: rss / 1024 };
}

async function totalSamples(httpPort: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/api/v1/links`, {
    headers: { authorization: `Bearer ${API}` },
  });
  const j = (await res.json()) as { links: { samples: number }[] };
  return j.links.reduce((n, l) => n + l.samples, 0);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meridian-bench-'));
  const topo = syntheticTopology(AGENTS);
  const topoFile = path.join(dir, 'topology.yaml');
  writeFileSync(topoFile, topo.fileText);
  const redis = await ops.startRedis();
  const influx = await ops.startInflux();
  const child = spawn(
    process.execPath,
    [
      BIN,
      'controller',
      '--topology',
      topoFile,
      '--grpc',
      '127.0.0.1:0',
      '--http',
      '127.0.0.1:0',
      '--redis',
      redis.url,
      '--influx',
      influx.url,
    ],
    {
      env: {
        ...process.env,
        MERIDIAN_API_TOKEN: API,
        MERIDIAN_AGENT_TOKEN: AGENT,
        MERIDIAN_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  let m: RegExpExecArray | null = null;
  for (let i = 0; i < 400 && !(m = /grpc \S+:(\d+) http \S+:(\d+)/.exec(out)); i++) await sleep(50);
  if (!m) throw new Error(`controller did not start: ${out}`);
  const grpcPort = Number(m[1]);
  const httpPort = Number(m[2]);
  const pid = child.pid!;

  const def = protoLoader.loadSync(MERIDIAN_PROTO_PATH, PROTO_LOADER_OPTIONS);
  const connect = (
    def['meridian.v1.AgentControl'] as unknown as Record<string, { requestSerialize(x: object): Buffer }>
  ).Connect!;
  const bySite = new Map<string, { link: string; peer: string }[]>();
  for (const l of topo.links) bySite.set(l.a, [...(bySite.get(l.a) ?? []), { link: l.id, peer: l.b }]);
  const encodeReport = (site: string, perLink: number): Buffer => {
    const links = (bySite.get(site) ?? []).map((x) => ({
      link: x.link,
      peerSite: x.peer,
      sent: perLink,
      received: perLink,
      alive: true,
      samples: Array.from({ length: perLink }, (_, k) => ({
        seq: k,
        sentAtUs: k * 100_000,
        rttMs: 10 + (k % 7),
        fwdMs: -1,
      })),
    }));
    return connect.requestSerialize({ report: { sentAtMs: Date.now(), links } });
  };

  const clients = Array.from(
    { length: CHANNELS },
    () => new grpc.Client(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure()),
  );
  const streams: {
    site: string;
    call: grpc.ClientDuplexStream<Buffer, Buffer>;
    nominal: Buffer;
    heavy: Buffer;
  }[] = [];
  let welcomed = 0;
  for (let i = 0; i < AGENTS; i++) {
    const site = `s${i}`;
    const call = clients[i % CHANNELS]!.makeBidiStreamRequest<Buffer, Buffer>(
      '/meridian.v1.AgentControl/Connect',
      (b: Buffer) => b,
      (b: Buffer) => b,
    );
    call.on('data', () => undefined);
    call.once('data', () => welcomed++);
    call.on('error', () => undefined);
    call.write(
      connect.requestSerialize({
        hello: {
          site,
          agentVersion: 'bench',
          token: AGENT,
          instanceId: `bench-${i}`,
          probeEndpoints: [{ host: '127.0.0.1', port: 20000 + i }],
        },
      }),
    );
    streams.push({ site, call, nominal: encodeReport(site, 10), heavy: encodeReport(site, 100) });
  }
  for (let i = 0; i < 600 && welcomed < AGENTS; i++) await sleep(50);
  console.log(`${welcomed}/${AGENTS} agent streams connected over ${CHANNELS} channels`);

  const window = async (
    name: string,
    offered: string,
    load: (stop: () => boolean) => Promise<void>,
  ): Promise<void> => {
    await sleep(1000);
    const s0 = await totalSamples(httpPort);
    const p0 = procStat(pid);
    const t0 = Date.now();
    let stopped = false;
    const running = load(() => stopped);
    await sleep(PHASE_S * 1000);
    stopped = true;
    await running;
    const t1 = Date.now();
    const p1 = procStat(pid);
    const s1 = await totalSamples(httpPort);
    const secs = (t1 - t0) / 1000;
    const rate = (s1 - s0) / secs;
    console.log(
      `${name.padEnd(11)} offered ${offered.padEnd(22)} ingested ${Math.round(rate).toLocaleString('en-US').padStart(10)} samples/s` +
        `  controller CPU ${((100 * (p1.cpuS - p0.cpuS)) / secs).toFixed(0).padStart(3)}% of one core  RSS ${p1.rssMb.toFixed(0)} MB`,
    );
  };

  await window('idle', '0', async (stop) => {
    while (!stop()) await sleep(100);
  });
  await window('nominal', `${(AGENTS * 20).toLocaleString('en-US')} samples/s`, async (stop) => {
    // Spread the 1,000 once-a-second reports over the second, as real agents would be.
    let k = 0;
    while (!stop()) {
      const t = Date.now();
      for (let j = 0; j < AGENTS / 10; j++) {
        const s = streams[k++ % AGENTS]!;
        s.call.write(s.nominal);
      }
      await sleep(Math.max(0, 100 - (Date.now() - t)));
    }
  });
  await window('saturation', 'as fast as flow control', async (stop) => {
    await Promise.all(
      streams.map(async (s) => {
        while (!stop()) {
          if (!s.call.write(s.heavy)) await new Promise((r) => s.call.once('drain', r));
          else await new Promise((r) => setImmediate(r));
        }
      }),
    );
  });

  await sleep(1500);
  const { Redis } = await import('ioredis');
  const r = new Redis(redis.url);
  const keys = await r.keys('meridian:link:*');
  const one = await r.hget('meridian:link:s0.s1', 'samples');
  r.disconnect();
  const q = await fetch(
    `${influx.url}/query?db=meridian&q=${encodeURIComponent('SELECT count(rtt_ms) FROM "raw"."link_probe"')}`,
  );
  const points = ((await q.json()) as { results: { series?: { values: [string, number][] }[] }[] }).results[0]
    ?.series?.[0]?.values[0]?.[1];
  console.log(
    `after the run: ${keys.length} link hashes in Redis (s0.s1 samples=${one}), ${points ?? 0} link_probe points in InfluxDB`,
  );

  for (const s of streams) s.call.cancel();
  for (const c of clients) c.close();
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  await redis.dispose();
  await influx.dispose();
  rmSync(dir, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
