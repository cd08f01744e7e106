/** `--addressing FILE`: the plan is checked against the schema and the topology; bad files exit 2. */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { loadTopology, REFERENCE_TOPOLOGY_PATH } from '@meridian/topology';
import { checkAddressingPlan, isControllerError, loadAddressingPlan } from '../src/index';
import { smallTopology } from './helpers';
import { planFor } from './policy-helpers';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'meridian.js');

t.test('plans are checked against the schema and the topology', (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mrd-plan-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const topo = smallTopology();
  const plan = planFor(topo);
  const good = path.join(dir, 'plan.json');
  writeFileSync(good, JSON.stringify(plan));
  t.same(loadAddressingPlan(good, topo), plan);

  const { sh2: _gone, ...sites } = plan.sites;
  const codeOf = (f: () => unknown): string | undefined => {
    try {
      f();
    } catch (err) {
      return isControllerError(err) ? `${err.code}: ${err.message}` : String(err);
    }
    return undefined;
  };
  t.match(
    codeOf(() => checkAddressingPlan({ ...plan, sites }, topo)),
    /CTRL_ERR_BAD_OPTION: .*site 'sh2'/,
  );
  t.match(
    codeOf(() => checkAddressingPlan({ sites: {}, links: 3 }, topo)),
    /CTRL_ERR_BAD_OPTION: .*\/links/,
  );
  t.match(
    codeOf(() => loadAddressingPlan(path.join(dir, 'missing.json'), topo)),
    /CTRL_ERR_BAD_OPTION: --addressing/,
  );

  t.test('meridian controller --addressing with a plan for another topology: exit 2, no stack', async (t) => {
    // smallTopology's plan does not cover the reference topology.
    t.ok(loadTopology(REFERENCE_TOPOLOGY_PATH).sites.length > 3);
    const res = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [BIN, 'controller', '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--addressing', good],
        { env: { ...process.env, MERIDIAN_API_TOKEN: 'x', MERIDIAN_AGENT_TOKEN: 'y' } },
        (err, _stdout, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr }),
      );
    });
    t.equal(res.code, 2);
    t.match(res.stderr, /--addressing .*no entry for site/);
    t.notMatch(res.stderr, /\n\s+at /, 'no stack');
  });
  t.end();
});
