/**
 * The lab's layout for a topology: namespace names, management addresses and UDP ports on top of
 * the addressing plan (`defaultAddressingPlan`), which the controller's policy compiler takes as
 * input, so the policies it compiles fit the lab exactly.
 */
import {
  defaultAddressingPlan,
  isRouteError,
  type AddressingPlan,
  type LinkAddressing,
  type Topology,
} from '@meridian/topology';
import { OpsError } from './errors';

// The plan itself lives in @meridian/topology (the controller's compiler takes it too); the lab
// re-exports it for its callers.
export {
  defaultAddressingPlan,
  hostAddressOf,
  type AddressingPlan,
  type LinkAddressing,
  type SiteAddressing,
} from '@meridian/topology';

export interface LabSitePlan {
  readonly id: string;
  readonly index: number;
  readonly netns: string;
  readonly hostAddress: string;
  readonly tunnelSource: string;
  /** Root-namespace end of the management veth (the controller listens here), and the site end. */
  readonly mgmtRoot: string;
  readonly mgmtSite: string;
  readonly mgmtRootIf: string;
}

/** A link of the lab: its addressing-plan entry (interfaces, addresses) plus what the lab adds. */
export interface LabLinkPlan extends Pick<
  LinkAddressing,
  'index' | 'ifA' | 'ifB' | 'a4' | 'b4' | 'a6' | 'b6'
> {
  readonly id: string;
  readonly a: string;
  readonly b: string;
  /** UDP port of this link at both sites' management addresses (socat ↔ emulator). */
  readonly port: number;
}

export interface LabPlan {
  readonly sites: readonly LabSitePlan[];
  readonly links: readonly LabLinkPlan[];
  readonly addressing: AddressingPlan;
}

const MGMT_BASE = (10 << 24) | (254 << 16);

function ipv4(n: number): string {
  return [24, 16, 8, 0].map((s) => ((n >>> s) & 255).toString()).join('.');
}

export function labPlan(topology: Topology): LabPlan {
  let addressing: AddressingPlan;
  try {
    addressing = defaultAddressingPlan(topology);
  } catch (err) {
    if (isRouteError(err)) throw new OpsError('OPS_ERR_BAD_ARGS', err.message);
    throw err;
  }
  if (topology.sites.length > 16000)
    throw new OpsError('OPS_ERR_BAD_ARGS', 'the lab supports at most 16000 sites');
  if (topology.links.length > 20000)
    throw new OpsError('OPS_ERR_BAD_ARGS', 'the lab supports at most 20000 links');
  const sites = topology.sites
    .map((s) => {
      const a = addressing.sites[s.id];
      if (a === undefined) throw new OpsError('OPS_ERR_LAB_STATE', `no addressing for site '${s.id}'`);
      const netns = `mrd-${s.id}`;
      return {
        id: s.id,
        index: a.index,
        netns,
        hostAddress: a.hostAddress,
        tunnelSource: a.tunnelSource,
        mgmtRoot: ipv4(MGMT_BASE + 4 * a.index + 1),
        mgmtSite: ipv4(MGMT_BASE + 4 * a.index + 2),
        mgmtRootIf: `mm${a.index}`,
      };
    })
    .sort((x, y) => x.index - y.index);
  const links = topology.links
    .map((l) => {
      const a = addressing.links[l.id];
      if (a === undefined) throw new OpsError('OPS_ERR_LAB_STATE', `no addressing for link '${l.id}'`);
      return {
        id: l.id,
        index: a.index,
        a: l.a,
        b: l.b,
        ifA: a.ifA,
        ifB: a.ifB,
        a4: a.a4,
        b4: a.b4,
        a6: a.a6,
        b6: a.b6,
        port: 40000 + a.index,
      };
    })
    .sort((x, y) => x.index - y.index);
  return { sites, links, addressing };
}
