// Data-plane failover with local fast reroute only (no controller yet), in the namespace lab on
// the reference topology (root). A 50 packets/s voice stream (UDP, DSCP 46) runs between two edge
// sites over a multi-hop primary; per-path probes (UDP from the path's probe source port, 20 ms
// apart, timeout = the path's round trip + slack) feed a RerouteDecider (3 misses); a link in the middle of the primary path
// is cut in the link emulator; the driver switches the route to its pre-installed backup. Measured
// at the receiver: longest gap, lost, duplicated, reordered. Baseline (same run): the longest gap
// over the same stream before any failure. Without fast reroute, traffic would stay black-holed
// until the controller's recompute (not wired yet), so that comparison is left to the full
// `bench:failover`.
//
// Run as root: npx tsc -b edge-agent && node edge-agent/dist/bench/driver-failover.bench.js [TRIALS]
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import os from 'node:os';
import path from 'node:path';
import { REFERENCE_TOPOLOGY_PATH, computeRoutes, loadTopology, type Route } from '@meridian/topology';
import { compilePolicies } from '@meridian/controller';
import { defaultAddressingPlan, labDown, labFault, labPrerequisites, labStatus, labUp } from '@meridian/ops';
import { LinuxPolicyDriver, RerouteDecider, pathProbePort, routeKey } from '../src/index';

const RECEIVER = `
const d=require('dgram');const s=d.createSocket('udp4');const e=d.createSocket('udp4');
const log=[];s.on('message',(m)=>{log.push([m.readUInt32BE(0),performance.now()+performance.timeOrigin])});
e.on('message',(m,r)=>e.send(m,r.port,r.address));
s.bind(5004,process.argv[1]);e.bind(7,process.argv[1],()=>console.log('ready'));
process.on('SIGTERM',()=>{process.stdout.write(JSON.stringify(log)+'\\n',()=>process.exit(0))});`;

const SENDER = `
const s=require('dgram').createSocket('udp4');let seq=0;
s.bind(0,process.argv[1],()=>{setInterval(()=>{const b=Buffer.alloc(160);b.writeUInt32BE(seq++,0);s.send(b,5004,process.argv[2])},20)});`;

// Prints "<role> <1|0>" per probe: answered in time or not. The timeout adapts to the measured
// round trip like TCP's RTO (srtt + 4·rttvar, at least srtt + 50 ms against scheduling stalls on
// this shared machine), starting from the nominal one.
const PROBER = `
const d=require('dgram');const [host,dst,pp,pb,tp,tb]=process.argv.slice(1);
for(const [role,port,t0] of [['p',+pp,+tp],['b',+pb,+tb]]){const s=d.createSocket('udp4');let seq=0;const wait=new Map();
let srtt=0,rttvar=0,rto=t0;
s.on('message',(m)=>{const n=m.readUInt32BE(0);const w=wait.get(n);if(!w)return;clearTimeout(w.t);wait.delete(n);
const r=performance.now()-w.at;if(srtt===0){srtt=r;rttvar=r/2}else{rttvar=0.75*rttvar+0.25*Math.abs(srtt-r);srtt=0.875*srtt+0.125*r}
rto=Math.max(srtt+50,srtt+4*rttvar);console.log(role+' 1')});
s.bind(port,host,()=>setInterval(()=>{const n=seq++;const b=Buffer.alloc(8);b.writeUInt32BE(n,0);
wait.set(n,{at:performance.now(),t:setTimeout(()=>{wait.delete(n);console.log(role+' 0')},rto)});s.send(b,7,dst)},20))}`;

function nsNode(ns: string, script: string, args: string[]): ChildProcess {
  return spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
}

function analyse(
  log: [number, number][],
  from: number,
  to: number,
): { gapMs: number; lost: number; dup: number; reordered: number } {
  const inWindow = log.filter(([, t]) => t >= from && t <= to);
  let gap = 0;
  for (let i = 1; i < inWindow.length; i++) gap = Math.max(gap, inWindow[i]![1] - inWindow[i - 1]![1]);
  const seqs = inWindow.map(([s]) => s);
  const seen = new Set<number>();
  let dup = 0;
  let reordered = 0;
  let max = -1;
  for (const s of seqs) {
    if (seen.has(s)) dup++;
    seen.add(s);
    if (s < max) reordered++;
    max = Math.max(max, s);
  }
  const lo = Math.min(...seqs);
  const hi = Math.max(...seqs);
  return { gapMs: gap, lost: hi - lo + 1 - seen.size, dup, reordered };
}

async function main(): Promise<void> {
  const why = await labPrerequisites();
  if (why !== null) {
    process.stdout.write(`skipped: ${why}\n`);
    return;
  }
  const trials = Number(process.argv[2] ?? 5);
  const topology = loadTopology(REFERENCE_TOPOLOGY_PATH);
  const { routes } = computeRoutes(topology);
  const plan = defaultAddressingPlan(topology);
  const policies = compilePolicies(topology, routes, plan);
  // The voice route between two edge sites with the longest primary, and a link to cut: on its
  // primary, not on its backup, not on the reverse default-class route (the probe replies' path).
  let pick: { route: Route; link: string } | null = null;
  for (const r of routes) {
    if (r.class !== 'voice' || r.primary === null || r.backup === null) continue;
    const src = topology.sites.find((s) => s.id === r.src)!;
    const dst = topology.sites.find((s) => s.id === r.dst)!;
    if (src.kind !== 'edge' || dst.kind !== 'edge') continue;
    const reverse = routes.find(
      (x) => x.class === policies.get(r.dst)!.defaultClass && x.src === r.dst && x.dst === r.src,
    );
    const cut = r.primary.links
      .slice(1)
      .find((l) => !r.backup!.links.includes(l) && !(reverse?.primary?.links ?? []).includes(l));
    if (cut !== undefined && (pick === null || r.primary.links.length > pick.route.primary!.links.length))
      pick = { route: r, link: cut };
  }
  if (pick === null) throw new Error('no suitable voice route in the reference topology');
  const { route, link } = pick;
  const stateDir = path.join(os.tmpdir(), `meridian-bench-failover-${process.pid}`);
  await labDown({ stateDir });
  await labUp(topology, { stateDir, waitMs: 600_000 });
  const children: ChildProcess[] = [];
  try {
    for (const [site, p] of policies) {
      const r = await new LinuxPolicyDriver({ netns: `mrd-${site}` }).apply(p);
      if (!r.ok) throw r.error;
    }
    const srcNs = `mrd-${route.src}`;
    const dstNs = `mrd-${route.dst}`;
    const srcHost = plan.sites[route.src]!.hostAddress;
    const dstHost = plan.sites[route.dst]!.hostAddress;
    // The stream carries DSCP 46 (Node cannot set IP_TOS): a bench-only nft table marks it first.
    const nft = spawn('ip', ['netns', 'exec', srcNs, 'nft', '-f', '-']);
    nft.stdin.end(
      'table ip bench {\n chain out {\n  type filter hook output priority -200; policy accept;\n  udp dport 5004 ip dscp set 46\n }\n}\n',
    );
    const nftCode = await new Promise((res) => nft.on('close', res));
    if (nftCode !== 0) throw new Error('cannot install the bench DSCP rule');

    const policy = policies.get(route.src)!;
    const slot = policy.routes.find((x) => x.class === 'voice' && x.dst === route.dst)!.slot;
    const driver = new LinuxPolicyDriver({ netns: srcNs });
    await driver.apply(policy);
    const decider = new RerouteDecider({ downAfterMisses: 3 });
    decider.setPolicy(policy);

    const receiver = nsNode(dstNs, RECEIVER, [dstHost]);
    children.push(receiver);
    await new Promise<void>((res) => createInterface({ input: receiver.stdout! }).once('line', () => res()));
    const sender = nsNode(srcNs, SENDER, [srcHost, dstHost]);
    children.push(sender);
    let switchedAt = 0;
    const actions: string[] = [];
    // A probe is lost when its answer is later than the round trip can be: the path there, the
    // default-class route back (where the reflector's answer goes), their jitter, some slack.
    const reverse = routes.find(
      (x) => x.class === policies.get(route.dst)!.defaultClass && x.src === route.dst && x.dst === route.src,
    );
    const span = (links: readonly string[]): number =>
      links.reduce((sum, id) => {
        const l = topology.links.find((x) => x.id === id)!;
        return sum + l.latencyMs + 3 * l.jitterMs;
      }, 0);
    const back = span(reverse?.primary?.links ?? []);
    const timeoutP = Math.ceil(span(route.primary!.links) + back + 30);
    const timeoutB = Math.ceil(span(route.backup!.links) + back + 30);
    const prober = nsNode(srcNs, PROBER, [
      srcHost,
      dstHost,
      String(pathProbePort(policy, slot, 'primary')),
      String(pathProbePort(policy, slot, 'backup')),
      String(timeoutP),
      String(timeoutB),
    ]);
    children.push(prober);
    createInterface({ input: prober.stdout! }).on('line', (line) => {
      const [role, ok] = line.split(' ');
      const action = decider.observe(slot, role === 'p' ? 'primary' : 'backup', ok === '1');
      if (action !== null) actions.push(`${new Date().toISOString()} ${action.action}`);
      if (action !== null && process.env['DEBUG_BENCH'] !== undefined) {
        process.stdout.write(`${new Date().toISOString()} ${action.action} ${action.reason}\n`);
      }
      if (action?.action === 'activate-primary') void driver.activatePrimary(action.routeKey);
      if (action?.action === 'activate-backup') {
        void driver
          .activateBackup(action.routeKey)
          .then(() => (switchedAt = performance.now() + performance.timeOrigin));
      }
    });
    const now = (): number => performance.now() + performance.timeOrigin;
    await new Promise((r) => setTimeout(r, 2000));
    // Warm-up done (the first probes of a path can be lost while it starts): primary, fresh health.
    await driver.activatePrimary(routeKey(route));
    decider.restored(slot);
    await new Promise((r) => setTimeout(r, 1000));
    const baselineFrom = now();
    await new Promise((r) => setTimeout(r, 3000));
    const baselineTo = now();
    const windows: { from: number; failAt: number; to: number; switchMs: number }[] = [];
    for (let i = 0; i < trials; i++) {
      const from = now();
      await new Promise((r) => setTimeout(r, 500));
      switchedAt = 0;
      const failAt = now();
      if (process.env['DEBUG_BENCH'] !== undefined) process.stdout.write(`${new Date().toISOString()} cut\n`);
      await labFault(link, { kind: 'down' }, { stateDir });
      await new Promise((r) => setTimeout(r, 1500));
      const to = now();
      if (process.env['DEBUG_BENCH'] !== undefined) {
        const st = await labStatus({ stateDir });
        process.stdout.write(
          JSON.stringify(
            (st.links as { id: string; ab: { received: number }; ba: { received: number } }[])
              .filter((l) => l.ab.received > 150 || l.ba.received > 150)
              .map((l) => [l.id, l.ab.received, l.ba.received]),
          ) + '\n',
        );
      }
      windows.push({ from, failAt, to, switchMs: switchedAt > 0 ? switchedAt - failAt : NaN });
      await labFault(link, { kind: 'clear' }, { stateDir });
      // Let the probes lost in the outage time out before the route goes back to its primary.
      await new Promise((r) => setTimeout(r, 1000));
      await driver.activatePrimary(routeKey(route));
      decider.restored(slot);
      if (process.env['DEBUG_BENCH'] !== undefined)
        process.stdout.write(`${new Date().toISOString()} restored\n`);
      await new Promise((r) => setTimeout(r, 1000));
    }
    receiver.kill('SIGTERM');
    const out = await new Promise<string>((res) =>
      createInterface({ input: receiver.stdout! }).once('line', res),
    );
    const log = JSON.parse(out) as [number, number][];
    const base = analyse(log, baselineFrom, baselineTo);
    process.stdout.write(
      `route voice ${route.src}>${route.dst}: primary ${route.primary!.sites.join('>')}, backup ${route.backup!.sites.join('>')}; cut ${link}\n`,
    );
    process.stdout.write(
      `probes every 20 ms, timeout max(srtt+4·rttvar, srtt+50 ms) (initially ${timeoutP} / ${timeoutB} ms), 3 losses = down\n`,
    );
    process.stdout.write(
      `baseline (no failure, 3 s): longest gap ${base.gapMs.toFixed(1)} ms, lost ${base.lost}\n`,
    );
    const gaps: number[] = [];
    windows.forEach((w, i) => {
      const a = analyse(log, w.from, w.to);
      gaps.push(a.gapMs);
      process.stdout.write(
        `trial ${i + 1}: longest gap ${a.gapMs.toFixed(1)} ms, lost ${a.lost}, duplicated ${a.dup}, reordered ${a.reordered}, switched ${w.switchMs.toFixed(0)} ms after the cut\n`,
      );
    });
    process.stdout.write(
      `decider actions: ${actions.length} for ${trials} cuts (more = switches without a cut)\n`,
    );
    gaps.sort((a, b) => a - b);
    const q = (p: number): number => gaps[Math.min(gaps.length - 1, Math.ceil(p * gaps.length) - 1)] ?? NaN;
    process.stdout.write(
      `gap p50 ${q(0.5).toFixed(1)} ms, p99 ${q(0.99).toFixed(1)} ms, max ${gaps[gaps.length - 1]?.toFixed(1)} ms over ${trials} trials\n`,
    );
  } finally {
    for (const c of children) c.kill('SIGKILL');
    await labDown({ stateDir });
  }
}

void main();
