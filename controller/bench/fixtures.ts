/** Synthetic topologies for the controller benchmarks. */
import type { Topology } from '@meridian/topology';

/**
 * `n` edge sites on a ring with chords: site i links to i+1 and i+7 (2n links, every site the `a`
 * end of two). Returned as the model and as topology-file text (JSON is YAML).
 */
export function syntheticTopology(n: number): Topology & { fileText: string } {
  const sites = Array.from({ length: n }, (_, i) => ({
    id: `s${i}`,
    kind: 'edge' as const,
    region: `r${i % 10}`,
    prefixes: [`10.${Math.floor(i / 250)}.${i % 250}.0/24`],
  }));
  const links = [];
  for (let i = 0; i < n; i++) {
    for (const step of [1, 7]) {
      const j = (i + step) % n;
      links.push({
        id: `s${i}.s${j}`,
        a: `s${i}`,
        b: `s${j}`,
        transport: 'fiber' as const,
        capacityMbps: 1000,
        latencyMs: 5,
        jitterMs: 0.5,
        lossPct: 0,
        cost: 1,
      });
    }
  }
  const classes = [
    {
      id: 'voice',
      sla: { maxLatencyMs: 150, maxJitterMs: 30, maxLossPct: 1 },
      objective: 'latency' as const,
      maxUtilPct: 85,
      priority: 1,
    },
  ];
  const fileText = JSON.stringify({ version: 1, sites, links, classes });
  return { version: 1, source: '<synthetic>', sites, links, classes, devices: [], fileText };
}
