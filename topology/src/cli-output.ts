/** Small helpers shared by the `validate` and `routes` commands: aligned tables, problem lists. */
import type { TopologyProblem } from './errors';

/** Column alignment of `formatTable`. */
export type Align = 'left' | 'right';

/**
 * Renders rows as an aligned text table: a header, then one line per row; columns separated by two
 * spaces, trailing spaces trimmed.
 */
export function formatTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
  align: readonly Align[] = [],
): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (align[i] === 'right' ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

/**
 * A number for people: at most 3 decimals, no trailing zeros (`14`, `14.5`, `0.123`).
 */
export function formatNumber(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const s = n.toFixed(3).replace(/\.?0+$/, '');
  return s === '-0' ? '0' : s;
}

/**
 * A number for JSON: rounded to 1e-9 so that float noise (`14.000000000000002` from adding
 * latencies) does not leak into the output; every value the engine computes is otherwise kept.
 */
export function jsonNumber(n: number): number {
  if (!Number.isFinite(n)) return n;
  const r = Number(n.toFixed(9));
  return Object.is(r, -0) ? 0 : r;
}

/** Writes every problem (one per line) to stderr under a one-line heading. */
export function writeProblems(heading: string, problems: readonly TopologyProblem[]): void {
  process.stderr.write(`${heading}\n${problems.map((p) => `  ${p.message}\n`).join('')}`);
}

let pipeGuard = false;

/**
 * Writes command output to stdout. A reader that goes away early (`meridian routes | head`) is
 * normal use, not an error: EPIPE is swallowed instead of crashing with an unhandled 'error' event.
 */
export function writeStdout(text: string): void {
  if (!pipeGuard) {
    pipeGuard = true;
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') process.stderr.write(`meridian: cannot write output: ${err.message}\n`);
    });
  }
  process.stdout.write(text);
}
