/** `meridian validate FILE`: check a topology file; print a summary (exit 0) or every problem (exit 2). */
import { parseArgs } from 'node:util';
import { writeProblems, writeStdout } from './cli-output';
import { checkTopologyFile } from './loader';

const USAGE = `usage: meridian validate FILE

Checks a topology file (YAML, version 1). Prints a one-line summary and exits 0 when it is valid;
otherwise prints every problem (file:line:column path: what, expected what) to stderr and exits 2.
Warnings (likely typos of known keys) go to stderr and do not change the exit code.`;

/**
 * Runs `meridian validate`.
 * @returns the exit code: 0 valid, 2 invalid file or bad usage.
 */
export function validateCommand(argv: readonly string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: { help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    process.stderr.write(
      `meridian validate: ${err instanceof Error ? err.message : String(err)}\n\n${USAGE}\n`,
    );
    return Promise.resolve(2);
  }
  if (parsed.values.help === true) {
    process.stdout.write(`${USAGE}\n`);
    return Promise.resolve(0);
  }
  if (parsed.positionals.length !== 1) {
    const why = parsed.positionals.length === 0 ? 'missing FILE' : 'exactly one FILE expected';
    process.stderr.write(`meridian validate: ${why}\n\n${USAGE}\n`);
    return Promise.resolve(2);
  }
  const file = parsed.positionals[0]!;
  const result = checkTopologyFile(file);
  for (const w of result.warnings) process.stderr.write(`warning: ${w.message}\n`);
  const topo = result.topology;
  if (topo === undefined) {
    const n = result.problems.length;
    writeProblems(`${file}: invalid, ${n} problem${n === 1 ? '' : 's'}:`, result.problems);
    return Promise.resolve(2);
  }
  const count = (n: number, noun: string) => `${n} ${noun}${n === 1 ? '' : noun.endsWith('s') ? 'es' : 's'}`;
  writeStdout(
    `${file}: ok — ${count(topo.sites.length, 'site')}, ${count(topo.links.length, 'link')}, ` +
      `${count(topo.classes.length, 'class')}, ${count(topo.devices.length, 'device')}\n`,
  );
  return Promise.resolve(0);
}
