// How much forwarding state each forwarding mode puts on a site, and how long a site takes to apply
// it: `node edge-agent/dist/bench/forwarding-state.bench.js` (after `npm run build`).
//
// For the reference topology (every site pair) and a generated 300-site topology (6 cores, 294
// dual/triple-homed edges, 1,099 links; routes core↔core, edge→core and core→edge, five classes):
// routes computed by the engine, the controller's forwarding backups, then compiled in each mode.
// Per site: kernel objects the Linux driver renders (ip rules + routes + nft lines); the SRv6 mode
// is the baseline (its transit sites hold no per-route state). As root, each measured site's
// policy is applied by the real driver in a scratch namespace with veth interfaces named and
// addressed as the policy's (cold apply, then the same policy again: the no-op reconcile); SRv6
// applies only where the kernel has SRv6.
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import {
  REFERENCE_TOPOLOGY_PATH,
  computeRoutes,
  fullMeshPairs,
  generateWan,
  hubAndSpokePairs,
  loadTopology,
  type Topology,
} from '@meridian/topology';
import { compilePoliciesDetailed, forwardingBackups, type CompiledSitePolicy } from '@meridian/controller';
import { defaultAddressingPlan } from '@meridian/ops';
import { LinuxPolicyDriver, type ForwardingMode, type SitePolicy } from '../src/index';
import { renderKernel, renderNft } from '../src/linux-render';

const say = (s: string): boolean => process.stdout.write(`${s}\n`);

interface SiteCount {
  site: string;
  objects: number;
  transit: number;
}

function objectsOf(p: CompiledSitePolicy): number {
  const k = renderKernel(p);
  const nftLines = renderNft(p as SitePolicy)
    .split('\n')
    .filter((l) => l.includes('meta mark set')).length;
  return k.rules.length + k.routes.length + nftLines;
}

function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] ?? 0;
}

function sh(args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
}

/** A scratch namespace with the policy's interfaces (veth pairs, both ends inside), up and addressed. */
function scratch(p: CompiledSitePolicy, ns: string): void {
  spawnSync('ip', ['netns', 'del', ns]);
  sh(['netns', 'add', ns]);
  sh(['-n', ns, 'link', 'set', 'lo', 'up']);
  sh(['-n', ns, 'addr', 'add', `${p.hostAddress}/32`, 'dev', 'lo']);
  p.interfaces.forEach((i, n) => {
    sh(['-n', ns, 'link', 'add', i.ifName, 'type', 'veth', 'peer', 'name', `pp${n}`]);
    sh(['-n', ns, 'addr', 'add', `${i.local4}/30`, 'dev', i.ifName]);
    sh(['-n', ns, 'addr', 'add', `${i.local6}/64`, 'dev', i.ifName, 'nodad']);
    sh(['-n', ns, 'link', 'set', i.ifName, 'up']);
    sh(['-n', ns, 'link', 'set', `pp${n}`, 'up']);
  });
}

async function applyTimes(p: CompiledSitePolicy): Promise<{ coldMs: number; againMs: number } | string> {
  const ns = `mbench-${process.pid}`;
  try {
    scratch(p, ns);
    const d = new LinuxPolicyDriver({ netns: ns });
    const t0 = performance.now();
    const r1 = await d.apply(p);
    const t1 = performance.now();
    const fresh = new LinuxPolicyDriver({ netns: ns });
    const r2 = await fresh.apply(p);
    const t2 = performance.now();
    await d.close();
    await fresh.close();
    if (!r1.ok) return `${r1.error.code}: ${r1.error.message}`;
    if (!r2.ok) return `${r2.error.code}: ${r2.error.message}`;
    return { coldMs: t1 - t0, againMs: t2 - t1 };
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
  }
}

async function main(): Promise<void> {
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  const probeNs = `mbench-caps-${process.pid}`;
  let srv6 = false;
  if (root) {
    spawnSync('ip', ['netns', 'add', probeNs]);
    srv6 = (await new LinuxPolicyDriver({ netns: probeNs }).capabilities()).modes.includes('srv6');
    spawnSync('ip', ['netns', 'del', probeNs]);
  }
  say(
    `forwarding-state bench: ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), Node ${process.version}, kernel ${os.release()}; ` +
      (root
        ? `applies as root, SRv6 ${srv6 ? 'available' : 'refused by this kernel (SRv6 applies skipped)'}`
        : 'not root: no applies'),
  );
  const reference = loadTopology(REFERENCE_TOPOLOGY_PATH);
  const wan = generateWan({ seed: 1 });
  const cases: { name: string; topology: Topology; pairs: 'full' | 'hub' }[] = [
    { name: 'reference (10 sites, 29 links, full mesh)', topology: reference, pairs: 'full' },
    {
      name: `generated ${wan.sites.length} sites, ${wan.links.length} links (hub-and-spoke)`,
      topology: wan,
      pairs: 'hub',
    },
  ];
  say(
    '| topology | mode | routes | objects per site p50 / p99 / max | transit entries max | compile ms | apply busiest site: cold / again ms | apply median site: cold / again ms |',
  );
  say('|---|---|---|---|---|---|---|---|');
  for (const c of cases) {
    const pairs = c.pairs === 'full' ? fullMeshPairs(c.topology) : hubAndSpokePairs(c.topology);
    const { routes } = computeRoutes(c.topology, { pairs });
    const fwd = forwardingBackups(c.topology, { links: {} }, routes);
    const plan = defaultAddressingPlan(c.topology);
    for (const mode of ['srv6', 'hop-by-hop'] as ForwardingMode[]) {
      const t0 = performance.now();
      const res = compilePoliciesDetailed(c.topology, fwd.routes, plan, { forwarding: mode });
      const compileMs = performance.now() - t0;
      const counts: SiteCount[] = [...res.policies.values()].map((p) => ({
        site: p.site,
        objects: objectsOf(p),
        transit: p.transit.length,
      }));
      const objs = counts.map((x) => x.objects);
      const sorted = [...counts].sort((a, b) => a.objects - b.objects);
      const busiest = sorted[sorted.length - 1]!;
      const median = sorted[Math.floor(sorted.length / 2)]!;
      const applyCell = async (site: string): Promise<string> => {
        if (!root) return 'n/a (not root)';
        if (mode === 'srv6' && !srv6) return 'n/a (no SRv6)';
        const r = await applyTimes(res.policies.get(site)!);
        return typeof r === 'string'
          ? `failed: ${r}`
          : `${r.coldMs.toFixed(0)} / ${r.againMs.toFixed(0)} (${site})`;
      };
      say(
        `| ${c.name} | ${mode}${mode === 'srv6' ? ' (baseline)' : ''} | ${res.modes[mode]} | ${quantile(objs, 0.5)} / ${quantile(objs, 0.99)} / ${busiest.objects} | ${Math.max(...counts.map((x) => x.transit))} | ${compileMs.toFixed(0)} | ${await applyCell(busiest.site)} | ${await applyCell(median.site)} |`,
      );
    }
  }
}

main().catch((err: unknown) => {
  process.stderr.write(
    `forwarding-state bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exitCode = 1;
});
