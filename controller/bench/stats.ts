/** Statistics shared by the controller benchmarks. */

/** Nearest-rank percentile `p` (0–100] of `xs` (NaN when empty); `xs` is not modified. */
export function pct(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}
