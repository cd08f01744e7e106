/** IPv4 CIDR parsing and overlap detection for site prefixes. */

/** A parsed IPv4 prefix; `first`/`last` are the numeric bounds of the block. */
export interface Ipv4Prefix {
  readonly first: number;
  readonly last: number;
  readonly length: number;
  /** Canonical text, e.g. `10.1.0.0/16`. */
  readonly text: string;
}

/** Result of parsing: the prefix, or why not (with the canonical form when only host bits are wrong). */
export type CidrParse =
  | { readonly ok: true; readonly prefix: Ipv4Prefix }
  | { readonly ok: false; readonly reason: string; readonly canonical?: string };

function toText(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/**
 * Parses `a.b.c.d/len`. Octets are decimal 0..255 without leading zeros (which some tools read
 * as octal), length 0..32. Host bits must be zero: `10.1.2.3/16` is refused and `10.1.0.0/16`
 * suggested, since a site owns a block, not an address inside one.
 */
export function parseIpv4Cidr(text: string): CidrParse {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(text);
  if (m === null) return { ok: false, reason: 'not of the form a.b.c.d/len' };
  const octets = m.slice(1, 5);
  let addr = 0;
  for (const o of octets) {
    if (o.length > 1 && o.startsWith('0')) return { ok: false, reason: `octet '${o}' has a leading zero` };
    const v = Number(o);
    if (v > 255) return { ok: false, reason: `octet ${v} is above 255` };
    addr = addr * 256 + v;
  }
  const lenText = m[5]!;
  const length = Number(lenText);
  if (length > 32 || (lenText.length > 1 && lenText.startsWith('0'))) {
    return { ok: false, reason: `prefix length ${lenText} is not 0..32` };
  }
  const size = 2 ** (32 - length);
  const first = Math.floor(addr / size) * size;
  if (first !== addr) {
    const canonical = `${toText(first)}/${length}`;
    return { ok: false, reason: 'host bits are set', canonical };
  }
  return { ok: true, prefix: { first, last: first + size - 1, length, text: `${toText(first)}/${length}` } };
}

/** A prefix with whatever identifies where it came from. */
export interface OwnedPrefix<T> {
  readonly prefix: Ipv4Prefix;
  readonly owner: T;
}

/**
 * Every overlap among `items`, as pairs `[earlier, later]` in input order. CIDR blocks either nest
 * or are disjoint, so one sweep in address order finds, for every prefix that overlaps anything,
 * at least the widest block containing it: O(n log n) even for thousands of sites.
 */
export function findOverlaps<T>(items: readonly OwnedPrefix<T>[]): [OwnedPrefix<T>, OwnedPrefix<T>][] {
  const order = items.map((_, i) => i);
  order.sort((x, y) => {
    const a = items[x]!.prefix;
    const b = items[y]!.prefix;
    return a.first - b.first || b.last - a.last || x - y;
  });
  const out: [OwnedPrefix<T>, OwnedPrefix<T>][] = [];
  let cover = -1;
  for (const i of order) {
    const cur = items[i]!;
    if (cover >= 0 && cur.prefix.first <= items[cover]!.prefix.last) {
      out.push(cover < i ? [items[cover]!, cur] : [cur, items[cover]!]);
    } else {
      cover = i;
    }
  }
  return out;
}
