/**
 * Traffic tools for the lab (used by the failover benchmark and ops/test/lab-loop.test.ts): a UDP
 * stream sender and receiver run inside site namespaces, a DSCP marker (Node cannot set IP_TOS: a
 * small nft table in the sender's namespace sets it on the stream's packets before Meridian's
 * classifier sees them), per-interface counters, and the loop detector (ICMP time-exceeded sent
 * anywhere in the lab: a forwarding loop expires TTL / hop limit and shows there).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { dataPlanePriority } from '../src/index';

function run(
  cmd: string,
  args: readonly string[],
  input?: string,
): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const c = spawn(cmd, [...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    c.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    c.on('error', (e) => resolve({ code: 127, out, err: e.message }));
    c.on('close', (code) => resolve({ code: code ?? 1, out, err }));
    c.stdin.on('error', () => undefined);
    c.stdin.end(input ?? '');
  });
}

/** Sets DSCP `dscp` on UDP packets to `dports` leaving namespace `ns` (table `ip mrdtraffic`). */
export async function markDscp(ns: string, dports: readonly number[], dscp: number): Promise<void> {
  const rules = `table ip mrdtraffic {\n chain out {\n  type filter hook output priority -200; policy accept;\n  udp dport { ${dports.join(', ')} } ip dscp set ${dscp}\n }\n}\n`;
  await run('ip', ['netns', 'exec', ns, 'nft', 'delete', 'table', 'ip', 'mrdtraffic']);
  const r = await run('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], rules);
  if (r.code !== 0) throw new Error(`cannot install the DSCP marker in ${ns}: ${r.err}`);
}

const RECEIVER = `
const s=require('dgram').createSocket('udp4');const log=[];
s.on('message',(m)=>{if(m.length>=4)log.push([m.readUInt32BE(0),performance.timeOrigin+performance.now()])});
s.bind(+process.argv[2],process.argv[1],()=>console.log('ready'));
process.stdin.on('data',()=>{process.stdout.write(JSON.stringify(log)+'\\n');log.length=0});
process.on('SIGTERM',()=>process.exit(0));`;

const SENDER = `
const s=require('dgram').createSocket('udp4');const [src,dst,port,pps,size,count]=process.argv.slice(1);let seq=+(process.argv[7]||0);let n=0;
const start=performance.now();const period=1000/+pps;
s.bind(0,src,()=>{console.log('ready');const tick=()=>{const due=Math.floor((performance.now()-start)/period)+1;
while(n<due&&(+count===0||n<+count)){const b=Buffer.alloc(+size);b.writeUInt32BE(seq++,0);s.send(b,+port,dst);n++}
if(+count!==0&&n>=+count){setTimeout(()=>process.exit(0),50);return}setTimeout(tick,Math.max(1,period/2))};tick()});
process.on('SIGTERM',()=>process.exit(0));`;

/** A receiver in `ns` on `host:port`; `take()` returns (and forgets) `[seq, arrival ms]` so far. */
export interface Receiver {
  take(): Promise<[number, number][]>;
  stop(): void;
}

// The stream's endpoints stand for phones, which do not share a CPU with the routers: they run at
// the lab data plane's priority, so a burst of agent work at a failure does not pause the sender
// (a pause reads as a gap with no loss) or delay the receiver's timestamps.

export async function startReceiver(ns: string, host: string, port: number): Promise<Receiver> {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', RECEIVER, host, String(port)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  dataPlanePriority(child.pid);
  const lines = createInterface({ input: child.stdout });
  const queue: ((line: string) => void)[] = [];
  lines.on('line', (l) => queue.shift()?.(l));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`receiver in ${ns} on ${host}:${port} not ready in 10 s`));
    }, 10_000);
    queue.push(() => {
      clearTimeout(timer);
      resolve();
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`receiver in ${ns} on ${host}:${port} exited (${code})`));
    });
  });
  return {
    take: () =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`receiver in ${ns} did not answer`)), 10_000);
        queue.push((l) => {
          clearTimeout(timer);
          resolve(JSON.parse(l) as [number, number][]);
        });
        child.stdin.write('\n');
      }),
    stop: () => {
      child.kill('SIGKILL');
    },
  };
}

/** A sender in `ns` from `src` to `dst:port`: `pps` packets/s of `size` bytes, `count` (0: until stopped). */
export function startSender(
  ns: string,
  opts: {
    src: string;
    dst: string;
    port: number;
    pps: number;
    size?: number;
    count?: number;
    firstSeq?: number;
  },
): { child: ChildProcess; done: Promise<void>; stop(): void } {
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      ns,
      process.execPath,
      '-e',
      SENDER,
      opts.src,
      opts.dst,
      String(opts.port),
      String(opts.pps),
      String(opts.size ?? 160),
      String(opts.count ?? 0),
      String(opts.firstSeq ?? 0),
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  dataPlanePriority(child.pid);
  const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { child, done, stop: () => child.kill('SIGKILL') };
}

/** Gap, loss, duplicates and reordering of the packets that arrived in [from, to] (ms, epoch). */
export interface StreamStats {
  received: number;
  gapMs: number;
  lost: number;
  duplicated: number;
  reordered: number;
}

export function analyseStream(log: readonly [number, number][], from: number, to: number): StreamStats {
  const w = log.filter(([, at]) => at >= from && at <= to);
  let gap = 0;
  for (let i = 1; i < w.length; i++) gap = Math.max(gap, w[i]![1] - w[i - 1]![1]);
  const seen = new Set<number>();
  let duplicated = 0;
  let reordered = 0;
  let max = -1;
  for (const [s] of w) {
    if (seen.has(s)) duplicated++;
    else if (s < max) reordered++;
    seen.add(s);
    max = Math.max(max, s);
  }
  const seqs = [...seen];
  const lost = seqs.length === 0 ? 0 : Math.max(...seqs) - Math.min(...seqs) + 1 - seqs.length;
  return { received: w.length, gapMs: gap, lost, duplicated, reordered };
}

/** Per-interface tx/rx packets and bytes in a namespace. */
export async function interfaceCounters(
  ns: string,
): Promise<Map<string, { txPackets: number; rxPackets: number; txBytes: number; rxBytes: number }>> {
  const r = await run('ip', ['-n', ns, '-s', '-j', 'link', 'show']);
  const out = new Map<string, { txPackets: number; rxPackets: number; txBytes: number; rxBytes: number }>();
  for (const l of JSON.parse(r.out || '[]') as {
    ifname: string;
    stats64?: { rx: { packets: number; bytes: number }; tx: { packets: number; bytes: number } };
  }[]) {
    const s = l.stats64;
    if (s === undefined) continue;
    out.set(l.ifname, {
      txPackets: s.tx.packets,
      rxPackets: s.rx.packets,
      txBytes: s.tx.bytes,
      rxBytes: s.rx.bytes,
    });
  }
  return out;
}

/**
 * Counters of big packets (IP length > `minBytes`) sent per interface of a namespace (table
 * `inet mrdcount`, postrouting): tells a test stream's path apart from the probes (< 200 bytes).
 */
export async function installSizeCounters(
  ns: string,
  ifnames: readonly string[],
  minBytes = 900,
): Promise<void> {
  const rules = ifnames
    .map((i) => `  oifname "${i}" meta length > ${minBytes} counter comment "${i}"`)
    .join('\n');
  const text = `table inet mrdcount {\n chain post {\n  type filter hook postrouting priority 300; policy accept;\n${rules}\n }\n}\n`;
  await run('ip', ['netns', 'exec', ns, 'nft', 'delete', 'table', 'inet', 'mrdcount']);
  const r = await run('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], text);
  if (r.code !== 0) throw new Error(`cannot install size counters in ${ns}: ${r.err}`);
}

/** Big packets sent per interface since {@link installSizeCounters}. */
export async function readSizeCounters(ns: string): Promise<Map<string, number>> {
  const r = await run('ip', ['netns', 'exec', ns, 'nft', '-j', 'list', 'table', 'inet', 'mrdcount']);
  const out = new Map<string, number>();
  const doc = JSON.parse(r.out || '{"nftables":[]}') as {
    nftables: { rule?: { comment?: string; expr: { counter?: { packets: number } }[] } }[];
  };
  for (const item of doc.nftables) {
    const rule = item.rule;
    if (rule?.comment === undefined) continue;
    const c = rule.expr.find((e) => e.counter !== undefined)?.counter;
    out.set(rule.comment, c?.packets ?? 0);
  }
  return out;
}

/** ICMP time-exceeded messages sent (IPv4 + IPv6) in a namespace: a loop expires TTL/hop limit. */
export async function timeExceeded(ns: string): Promise<number> {
  const v4 = await run('ip', ['netns', 'exec', ns, 'cat', '/proc/net/snmp']);
  const v6 = await run('ip', ['netns', 'exec', ns, 'cat', '/proc/net/snmp6']);
  let n = 0;
  const lines = v4.out.split('\n').filter((l) => l.startsWith('Icmp:'));
  const [head, vals] = [lines[0]?.split(/\s+/) ?? [], lines[1]?.split(/\s+/) ?? []];
  const i = head.indexOf('OutTimeExcds');
  if (i >= 0) n += Number(vals[i] ?? 0);
  const m = /Icmp6OutTimeExcds\s+(\d+)/.exec(v6.out);
  if (m !== null) n += Number(m[1]);
  return n;
}

/** Sum of {@link timeExceeded} over namespaces. */
export async function labTimeExceeded(namespaces: readonly string[]): Promise<number> {
  let n = 0;
  for (const ns of namespaces) n += await timeExceeded(ns);
  return n;
}

/** Quantile (nearest rank) of numbers. */
export function quantile(values: readonly number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}
