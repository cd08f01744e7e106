// The reference topology in the namespace lab: real routes from the route engine, compiled,
// applied by the Linux driver in every site (hop-by-hop, and SRv6 where the kernel has it); voice reaches every site pair and takes its computed
// primary path. Needs root (skips with the reason otherwise).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { REFERENCE_TOPOLOGY_PATH, computeRoutes, loadTopology } from '@meridian/topology';
import { compilePolicies } from '@meridian/controller';
import { defaultAddressingPlan, labDown, labFault, labPrerequisites, labUp } from '@meridian/ops';
import { LinuxPolicyDriver, type ForwardingMode } from '../src/index';

function txPackets(ns: string): Record<string, number> {
  const r = spawnSync('ip', ['-n', ns, '-j', '-s', 'link', 'show'], { encoding: 'utf8' });
  const out: Record<string, number> = {};
  for (const l of JSON.parse(r.stdout) as { ifname: string; stats64: { tx: { packets: number } } }[]) {
    out[l.ifname] = l.stats64.tx.packets;
  }
  return out;
}

t.test('reference topology: every voice route answers along its computed path', async (t) => {
  const why = await labPrerequisites();
  if (why !== null) {
    t.plan(0, `skipped: needs root and ip/nft/socat: ${why}`);
    return;
  }
  const topology = loadTopology(REFERENCE_TOPOLOGY_PATH);
  const { routes } = computeRoutes(topology);
  const plan = defaultAddressingPlan(topology);
  const stateDir = path.join(os.tmpdir(), `meridian-lab-ref-${process.pid}`);
  await labDown({ stateDir });
  t.teardown(() => labDown({ stateDir }));
  await labUp(topology, { stateDir, waitMs: 600_000 });

  // This test is about paths: random loss (nominal on internet and MPLS links) off.
  for (const l of topology.links) await labFault(l.id, { kind: 'loss', pct: 0 }, { stateDir });
  const modes: ForwardingMode[] = ['hop-by-hop'];
  const caps = await new LinuxPolicyDriver({ netns: 'mrd-bj-a' }).capabilities();
  if (caps.modes.includes('srv6')) modes.push('srv6');
  else t.comment(`this kernel has no SRv6 (${caps.missing.join('; ')}): hop-by-hop only`);

  for (const mode of modes) {
    await t.test(`${mode} forwarding`, async (t) => {
      const policies = compilePolicies(topology, routes, plan, { forwarding: mode });
      for (const [site, policy] of policies) {
        const r = await new LinuxPolicyDriver({ netns: `mrd-${site}` }).apply(policy);
        t.ok(
          r.ok,
          `${site}: ${r.ok ? `${r.changes} changes` : `${r.error.message} ${String(r.error.detail)}`}`,
        );
      }

      const voice = routes.filter((r) => r.class === 'voice' && r.primary !== null);
      t.ok(voice.length >= 90, `${voice.length} voice routes`);
      const unanswered: string[] = [];
      const offPath: string[] = [];
      const retried: string[] = [];
      for (const r of voice) {
        const p = r.primary!;
        // Interfaces on the forward path: at each site, the interface of the next link.
        const hops = p.links.map((linkId, i) => {
          const site = p.sites[i]!;
          const l = topology.links.find((x) => x.id === linkId)!;
          const la = plan.links[linkId]!;
          return { ns: `mrd-${site}`, ifName: l.a === site ? la.ifA : la.ifB };
        });
        // Reachability: ICMP matches no class here (voice is UDP), so it takes the default class.
        const res = spawnSync(
          'ip',
          [
            'netns',
            'exec',
            `mrd-${r.src}`,
            'ping',
            '-n',
            '-q',
            '-c',
            '3',
            '-i',
            '0.02',
            '-W',
            '1',
            '-I',
            plan.sites[r.src]!.hostAddress,
            plan.sites[r.dst]!.hostAddress,
          ],
          { encoding: 'utf8' },
        );
        if (Number(/(\d+) received/.exec(res.stdout)?.[1] ?? 0) === 0) unanswered.push(`${r.src}>${r.dst}`);
        // Path: five voice datagrams (UDP, DSCP 46) must leave by every interface of the primary path.
        // Counters are read once the datagrams had time to cross the path's emulated delays.
        const waitMs =
          100 +
          p.links.reduce((sum, id) => {
            const l = topology.links.find((x) => x.id === id)!;
            return sum + l.latencyMs + 3 * l.jitterMs;
          }, 0);
        const attempt = async (): Promise<string[]> => {
          const before = hops.map((h) => txPackets(h.ns)[h.ifName] ?? 0);
          spawnSync('ip', [
            'netns',
            'exec',
            `mrd-${r.src}`,
            'sh',
            '-c',
            `for i in 1 2 3 4 5; do echo voice; sleep 0.01; done | socat -b 6 -u - UDP-DATAGRAM:${plan.sites[r.dst]!.hostAddress}:5004,bind=${plan.sites[r.src]!.hostAddress},ip-tos=184`,
          ]);
          await new Promise((res) => setTimeout(res, waitMs));
          return hops.flatMap((h, i) => {
            const sent = (txPackets(h.ns)[h.ifName] ?? 0) - (before[i] ?? 0);
            return sent < 5 ? [`${r.src}>${r.dst} at ${h.ns}/${h.ifName}: ${sent}`] : [];
          });
        };
        let missing = await attempt();
        if (missing.length > 0) {
          // Seen rarely on the loaded 2-vCPU machine: a burst short at one hop. One retry, reported.
          retried.push(...missing);
          missing = await attempt();
        }
        offPath.push(...missing);
      }
      if (retried.length > 0) t.comment(`retried once: ${retried.join('; ')}`);
      t.same(unanswered, [], 'every site pair answers');
      t.same(offPath, [], 'every hop of every voice primary path carried the voice datagrams');
    });
  }
});
