// What the lab's link emulator costs: added round-trip latency and its packet rate, on a two-site
// lab (root). Baseline in the same run: the management veth between the same namespace and the
// root namespace (kernel only). Run as root after `npx tsc -b ops`: node ops/dist/bench/link-emulator.js
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import type { Topology } from '@meridian/topology';
import { emulatorRequest, labDown, labFault, labPrerequisites, labUp, readLabState } from '../src/lab';
import { labPlan } from '../src/lab-plan';

const topology: Topology = {
  version: 1,
  source: '<bench>',
  sites: [
    { id: 'bx', kind: 'dc', region: 'r', prefixes: ['10.61.0.0/24'] },
    { id: 'by', kind: 'dc', region: 'r', prefixes: ['10.62.0.0/24'] },
  ],
  links: [
    {
      id: 'bxy',
      a: 'bx',
      b: 'by',
      transport: 'fiber',
      capacityMbps: 1000,
      latencyMs: 0,
      jitterMs: 0,
      lossPct: 0,
      cost: 1,
    },
  ],
  classes: [],
  devices: [],
};

function rtt(ns: string, to: string, count: number): { avg: number; p99: number } {
  const r = spawnSync('ip', ['netns', 'exec', ns, 'ping', '-n', '-c', String(count), '-i', '0.005', to], {
    encoding: 'utf8',
  });
  const times = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
  const avg = times.reduce((s, x) => s + x, 0) / times.length;
  return { avg, p99: times[Math.min(times.length - 1, Math.floor(times.length * 0.99))] ?? NaN };
}

async function main(): Promise<void> {
  const why = await labPrerequisites();
  if (why !== null) {
    process.stdout.write(`skipped: ${why}\n`);
    return;
  }
  const stateDir = path.join(os.tmpdir(), `meridian-bench-emu-${process.pid}`);
  await labUp(topology, { stateDir, waitMs: 600_000 });
  try {
    const plan = labPlan(topology);
    const l = plan.links[0]!;
    const x = plan.sites.find((s) => s.id === 'bx')!;
    await labFault('bxy', { kind: 'delay', ms: 0, jitterMs: 0 }, { stateDir });
    rtt(x.netns, l.b4, 50); // warm up
    const base = rtt(x.netns, x.mgmtRoot, 500);
    const emu = rtt(x.netns, l.b4, 500);
    process.stdout.write(
      `RTT, 500 pings: mgmt veth (baseline) avg ${base.avg.toFixed(3)} ms p99 ${base.p99.toFixed(3)} ms\n`,
    );
    process.stdout.write(
      `RTT, 500 pings: emulated link (TUN+socat+emulator, delay 0) avg ${emu.avg.toFixed(3)} ms p99 ${emu.p99.toFixed(3)} ms\n`,
    );
    process.stdout.write(
      `added by the emulated link: ${(emu.avg - base.avg).toFixed(3)} ms per round trip\n`,
    );

    await labFault('bxy', { kind: 'delay', ms: 10, jitterMs: 0 }, { stateDir });
    const d10 = rtt(x.netns, l.b4, 200);
    process.stdout.write(
      `RTT with 10 ms one-way delay configured: avg ${d10.avg.toFixed(3)} ms p99 ${d10.p99.toFixed(3)} ms (ideal 20 + ${emu.avg.toFixed(3)})\n`,
    );
    await labFault('bxy', { kind: 'delay', ms: 0, jitterMs: 0 }, { stateDir });
    // Packet rate: a sender in bx blasts 1200-byte datagrams for 2 s; the emulator counts.
    const state = readLabState(stateDir)!;
    const stats = async (): Promise<{ received: number; forwarded: number }> => {
      const r = (await emulatorRequest(state.emulatorSocket, { op: 'status' })) as {
        links: { ab: { received: number; forwarded: number } }[];
      };
      return r.links[0]!.ab;
    };
    const before = await stats();
    const js = `const s=require('dgram').createSocket('udp4');const b=Buffer.alloc(1200);const end=Date.now()+2000;let n=0;(function go(){for(let i=0;i<64;i++){s.send(b,9,'${l.b4}');n++}if(Date.now()<end)setImmediate(go);else setTimeout(()=>{console.log(n);s.close()},200)})()`;
    const t0 = performance.now();
    const r = spawnSync('ip', ['netns', 'exec', x.netns, process.execPath, '-e', js], { encoding: 'utf8' });
    const secs = (performance.now() - t0) / 1000;
    await new Promise((res) => setTimeout(res, 300));
    const after = await stats();
    const sent = Number(r.stdout.trim());
    const fwd = after.forwarded - before.forwarded;
    const rec = after.received - before.received;
    process.stdout.write(
      `throughput, 1200-byte UDP for 2 s: sender issued ${sent}, emulator received ${rec}, forwarded ${fwd} ` +
        `(${(fwd / 2).toFixed(0)} pkt/s, ${((fwd * 1200 * 8) / 2 / 1e6).toFixed(1)} Mbit/s payload; wall ${secs.toFixed(1)} s)\n`,
    );
  } finally {
    await labDown({ stateDir });
  }
}

void main();
