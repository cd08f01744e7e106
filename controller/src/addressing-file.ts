/**
 * `--addressing FILE`: the addressing plan the policy compiler needs (JSON, the shape of
 * `AddressingPlan`; the lab writes it as `plan.json` in its state directory). Checked against the
 * schema and the topology: every site and link must have an entry.
 */
import { readFileSync } from 'node:fs';
import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { Topology } from '@meridian/topology';
import { ControllerError } from './errors';
import type { AddressingPlan } from './policy-compiler';

const Str = Type.String({ minLength: 1, maxLength: 128 });

export const AddressingPlanSchema = Type.Object({
  sites: Type.Record(
    Type.String(),
    Type.Object({
      index: Type.Integer({ minimum: 0 }),
      locator: Str,
      tunnelSource: Str,
      dx4Sid: Str,
      hostAddress: Str,
    }),
  ),
  links: Type.Record(
    Type.String(),
    Type.Object({
      index: Type.Integer({ minimum: 0 }),
      ifA: Str,
      ifB: Str,
      a4: Str,
      b4: Str,
      a6: Str,
      b6: Str,
      sidA: Str,
      sidB: Str,
    }),
  ),
});

/** Checks a parsed plan against the schema and the topology. @throws ControllerError CTRL_ERR_BAD_OPTION */
export function checkAddressingPlan(
  value: unknown,
  topology: Topology,
  where = 'addressing plan',
): AddressingPlan {
  if (!Value.Check(AddressingPlanSchema, value)) {
    const e = Value.Errors(AddressingPlanSchema, value).First();
    throw new ControllerError(
      'CTRL_ERR_BAD_OPTION',
      `${where}: ${e ? `${e.path || '/'}: ${e.message}` : 'invalid'} (expected {"sites":{...},"links":{...}})`,
    );
  }
  const plan = value as AddressingPlan;
  const missing = [
    ...topology.sites.filter((s) => plan.sites[s.id] === undefined).map((s) => `site '${s.id}'`),
    ...topology.links.filter((l) => plan.links[l.id] === undefined).map((l) => `link '${l.id}'`),
  ];
  if (missing.length > 0) {
    throw new ControllerError(
      'CTRL_ERR_BAD_OPTION',
      `${where}: no entry for ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''} of the topology`,
    );
  }
  return plan;
}

/** Reads and checks `--addressing FILE`. @throws ControllerError CTRL_ERR_BAD_OPTION */
export function loadAddressingPlan(file: string, topology: Topology): AddressingPlan {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ControllerError('CTRL_ERR_BAD_OPTION', `--addressing ${file}: ${(err as Error).message}`);
  }
  return checkAddressingPlan(value, topology, `--addressing ${file}`);
}
