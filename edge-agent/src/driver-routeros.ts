/**
 * The RouterOS policy driver: renders a {@link SitePolicy} on a MikroTik router (RouterOS v7)
 * through its API with node-routeros. RouterOS has no SRv6, so a RouterOS site takes part in
 * hop-by-hop forwarding only (head-end, transit and destination of `forwarding: 'hop-by-hop'`
 * routes): a policy that needs SRv6 (`policyNeedsSrv6`: a route in srv6 mode, or `localSids`) is
 * refused with `AGENT_ERR_DRIVER_UNSUPPORTED` before anything is sent to the device. Mapping:
 *
 * | policy                      | RouterOS object (comment `meridian:<key>`)                               |
 * |-----------------------------|--------------------------------------------------------------------------|
 * | route slot n                | `/routing/table` `mrd-<n>-p` and `mrd-<n>-b` (`fib`)                      |
 * | primary / backup path       | `/ip/route` `dst-address=<prefix> gateway=<next hop on the first link> routing-table=mrd-<n>-p|b` |
 * | class match × prefix        | `/ip/firewall/mangle` chains `prerouting` and `output`: `dst-address=<prefix> [dscp=<d>] [protocol= dst-port=] action=mark-routing new-routing-mark=mrd-<n>-p passthrough=no`, classes in match order, the default class last |
 * | path probes (UDP source port) | chains `output` and `prerouting` (the agent may sit behind the router): `protocol=udp src-port=<port> dst-address=<prefix> action=mark-routing new-routing-mark=mrd-<n>-p|b`, first |
 * | transit: outgoing interface i (index in `interfaces`) | `/routing/table` `mrd-t-<i>`; `/ip/route dst-address=0.0.0.0/0 gateway=<entry's nextHop4> routing-table=mrd-t-<i>` |
 * | transit entry × src prefix × dst prefix | chain `prerouting`: `in-interface=<inIf> src-address=<src> dst-address=<dst> [class match as above] action=mark-routing new-routing-mark=mrd-t-<i> passthrough=no` (RouterOS takes one prefix per rule) |
 * | transit probe port          | chain `prerouting`: `in-interface= src-address= dst-address= protocol=udp src-port=<port>` → `mrd-t-<i>`, before any class rule |
 * | applied policy              | a disabled marker rule `chain=meridian-policy`, comment `meridian:policy:<hash>:<version>`, written last |
 *
 * Mangle rules match first-hit, so their order is part of the policy: head-end probe rules, then
 * the transit rules (probe ports, classes in match order, the default class last), then the
 * head-end's class rules (default class last). Transit rules stand before the head-end's because
 * they are the more specific ones (incoming interface and source): a packet of another site's
 * path to a destination this site also routes must follow that path, not this site's own route.
 * The incoming interface is what tells a route's primary from its backup at a transit site (the
 * compiler keeps them link-disjoint), so each gets its own rule and outgoing table.
 *
 * Fast reroute sets `new-routing-mark` of the slot's head-end mangle rules to `mrd-<n>-b` (one
 * `set` per rule); re-applying an unchanged primary keeps a rerouted slot on its backup. Transit
 * rules never move: the head-end's switch changes which of its paths the packets arrive on.
 *
 * `capabilities()` asks the device for its version (`/system/resource`) and whether the menus
 * above answer (`print count-only`); a device without them (RouterOS v6 has no `/routing/table`)
 * has no forwarding mode, and `apply()` refuses with `AGENT_ERR_DRIVER_UNSUPPORTED` naming them.
 *
 * Everything is derived from the device: apply reads the owned objects, adds what is missing
 * (tables, then routes, then the rules that name them: make before break), sets what differs,
 * puts the rules in order, and removes stale ones last (rules, then routes, then tables); so it
 * is idempotent and, after a disconnect mid-apply, simply runs again on a fresh session and
 * completes (resuming). A `!trap` mid-apply restores the previous policy.
 */
import { RouterOSAPI } from 'node-routeros';
import {
  routeKey,
  routeMode,
  transitKey,
  validatePolicy,
  type PolicyClass,
  type PolicyRoute,
  type SitePolicy,
  type TransitEntry,
} from './policy';
import {
  DriverError,
  type ActivePath,
  type ApplyOutcome,
  type DriverSnapshot,
  type ForwardingCapabilities,
  type PolicyDriver,
  type RerouteOutcome,
} from './driver';

export interface RouterOsDriverOptions {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  /** Per command, and for connecting (default 5000 ms). */
  readonly timeoutMs?: number;
  /** Sessions tried for one apply before giving up (default 3). */
  readonly attempts?: number;
}

type Row = Record<string, string>;
type Menu = '/routing/table' | '/ip/route' | '/ip/firewall/mangle';
const MENUS: readonly Menu[] = ['/routing/table', '/ip/route', '/ip/firewall/mangle'];
const OWNED = 'meridian:';
const MARKER_CHAIN = 'meridian-policy';

/** One desired object: its menu, ownership key and attributes. */
interface Desired {
  readonly menu: Menu;
  readonly key: string;
  readonly attrs: Row;
}

class Disconnected extends Error {}

const tableName = (slot: number, role: 'p' | 'b'): string => `mrd-${slot}-${role}`;
/** The transit table of the outgoing interface at index `i` of `policy.interfaces`. */
const transitTable = (i: number): string => `mrd-t-${i}`;
/** The menus hop-by-hop forwarding needs, in the order `capabilities()` reports them. */
const NEEDED_MENUS: readonly Menu[] = ['/ip/firewall/mangle', '/routing/table', '/ip/route'];
const NO_SRV6 = 'srv6: RouterOS has no SRv6';
/** Optional mangle matchers the driver renders, in the order they can be unset. */
const MATCHERS = ['src-port', 'dst-port', 'dscp', 'protocol', 'in-interface', 'src-address', 'dst-address'];

/** What `capabilities()` found, and whether the device answered at all (only then is it kept). */
interface Probed {
  readonly caps: ForwardingCapabilities;
  readonly reached: boolean;
}

export class RouterOsPolicyDriver implements PolicyDriver {
  readonly kind = 'routeros' as const;
  readonly #opts: RouterOsDriverOptions;
  #api: RouterOSAPI | null = null;
  #current: SitePolicy | null = null;
  #probed: Promise<Probed> | null = null;
  /** Sessions opened (for tests: resumption after a disconnect opens a new one). */
  sessions = 0;

  constructor(options: RouterOsDriverOptions) {
    this.#opts = options;
  }

  get #timeout(): number {
    return this.#opts.timeoutMs ?? 5000;
  }

  async #session(): Promise<RouterOSAPI> {
    if (this.#api !== null && this.#api.connected) return this.#api;
    const api = new RouterOSAPI({
      host: this.#opts.host,
      port: this.#opts.port,
      user: this.#opts.user,
      password: this.#opts.password,
      timeout: Math.max(1, Math.ceil(this.#timeout / 1000)),
    });
    // A dropped session must not crash the agent: node-routeros reports it as events.
    api.on('error', () => this.#drop(api));
    api.on('close', () => this.#drop(api));
    try {
      await withTimeout(api.connect(), this.#timeout, 'connect');
    } catch (err) {
      this.#drop(api);
      throw new DriverError(
        'AGENT_ERR_DRIVER_UNREACHABLE',
        `RouterOS API ${this.#opts.host}:${this.#opts.port}: ${errText(err)}`,
        {
          cause: err,
        },
      );
    }
    noDelay(api);
    this.sessions++;
    this.#api = api;
    return api;
  }

  #drop(api: RouterOSAPI): void {
    if (this.#api === api) this.#api = null;
    api.removeAllListeners('close');
    api.on('error', () => undefined);
    void api.close().catch(() => undefined);
  }

  /** One command; a trap becomes DriverError(APPLY), a lost session `Disconnected`. */
  async #cmd(path: string, words: string[] = []): Promise<Row[]> {
    const api = await this.#session();
    let closed: (() => void) | undefined;
    const lost = new Promise<never>((_, rej) => {
      closed = (): void => rej(new Disconnected('session closed'));
      api.once('close', closed);
      api.once('error', closed);
    });
    try {
      const res = await withTimeout(Promise.race([api.write(path, words), lost]), this.#timeout, path);
      return res;
    } catch (err) {
      if (err instanceof Disconnected || err instanceof TimeoutError) {
        this.#drop(api);
        throw new Disconnected(`${path}: ${err.message}`);
      }
      throw new DriverError('AGENT_ERR_DRIVER_APPLY', `RouterOS refused ${path} ${words.join(' ')}`, {
        detail: errText(err),
        cause: err,
      });
    } finally {
      if (closed !== undefined) {
        api.removeListener('close', closed);
        api.removeListener('error', closed);
      }
      lost.catch(() => undefined);
    }
  }

  /**
   * Asks the device once: its version, and whether each menu hop-by-hop needs answers a
   * `print count-only` (cheap even with a full routing table). An answer is kept for the life of
   * the driver; an unreachable device is asked again on the next call (the agent may start
   * before the router's API is up, and must not report it as unable for good).
   */
  async capabilities(): Promise<ForwardingCapabilities> {
    return (await this.#probe()).caps;
  }

  #probe(): Promise<Probed> {
    if (this.#probed === null) {
      const p = this.#askCapabilities();
      this.#probed = p;
      void p.then((r) => {
        if (!r.reached && this.#probed === p) this.#probed = null;
      });
    }
    return this.#probed;
  }

  async #askCapabilities(): Promise<Probed> {
    let platformVersion = 'unknown';
    const features: string[] = [];
    const missing: string[] = [NO_SRV6];
    // A `!trap` is the device's answer (kept, in its words); anything else means no answer.
    const refused = (err: unknown): string => {
      if (err instanceof DriverError && err.code === 'AGENT_ERR_DRIVER_APPLY')
        return err.detail ?? err.message;
      throw err;
    };
    try {
      try {
        const res = await this.#cmd('/system/resource/print', ['=.proplist=version']);
        platformVersion = res[0]?.['version'] ?? 'unknown';
      } catch (err) {
        missing.push(`/system/resource: ${refused(err)}`);
      }
      for (const menu of NEEDED_MENUS) {
        try {
          await this.#cmd(`${menu}/print`, ['=count-only=']);
          features.push(menu);
        } catch (err) {
          missing.push(`${menu}: ${refused(err)}`);
        }
      }
    } catch (err) {
      const why = err instanceof DriverError ? (err.detail ?? err.message) : errText(err);
      return {
        reached: false,
        caps: {
          platform: 'routeros',
          platformVersion,
          modes: [],
          features,
          missing: [...missing, `hop-by-hop: RouterOS API ${this.#opts.host}:${this.#opts.port}: ${why}`],
        },
      };
    }
    return {
      reached: true,
      caps: {
        platform: 'routeros',
        platformVersion,
        modes: features.length === NEEDED_MENUS.length ? ['hop-by-hop'] : [],
        features,
        missing,
      },
    };
  }

  async #owned(): Promise<Map<Menu, Row[]>> {
    const out = new Map<Menu, Row[]>();
    for (const menu of MENUS) {
      const rows = await this.#cmd(`${menu}/print`);
      out.set(
        menu,
        rows.filter((r) => (r['comment'] ?? '').startsWith(OWNED)),
      );
    }
    return out;
  }

  #render(policy: SitePolicy, onBackup: ReadonlySet<number>): Desired[] {
    const out: Desired[] = [];
    const classOrder = new Map(policy.classes.map((c, i) => [c.id, i]));
    const classById = new Map(policy.classes.map((c) => [c.id, c]));
    // Match order: classes in policy order, the default class (the catch-all) last.
    const classRank = (id: string): number =>
      (id === policy.defaultClass ? policy.classes.length : 0) + (classOrder.get(id) ?? 0);
    const matchOf = (id: string): PolicyClass['match'] =>
      id === policy.defaultClass ? undefined : classById.get(id)?.match;
    const routes = [...policy.routes].sort(
      (a, b) => classRank(a.class) - classRank(b.class) || a.slot - b.slot,
    );
    // Path probes first (the agent sends them, from the router or from behind it): the source
    // port pins the path whatever the probe's class.
    if (policy.pathProbePortBase !== null) {
      for (const chain of ['output', 'prerouting'] as const) {
        for (const r of routes) {
          for (const role of ['p', 'b'] as const) {
            if (role === 'b' && r.backup === null) continue;
            const port = policy.pathProbePortBase + 2 * r.slot + (role === 'b' ? 1 : 0);
            for (const prefix of r.dstPrefixes) {
              out.push({
                menu: '/ip/firewall/mangle',
                key: `pp:${r.slot}:${role}:${chain}:${prefix}`,
                attrs: {
                  chain,
                  'dst-address': prefix,
                  protocol: 'udp',
                  'src-port': String(port),
                  action: 'mark-routing',
                  'new-routing-mark': tableName(r.slot, role),
                  passthrough: 'no',
                },
              });
            }
          }
        }
      }
    }
    out.push(...renderTransit(policy, classRank, matchOf));
    for (const r of routes) {
      for (const role of ['p', 'b'] as const) {
        const path = role === 'p' ? r.primary : r.backup;
        if (path === null) continue;
        out.push({
          menu: '/routing/table',
          key: `t:${r.slot}:${role}`,
          attrs: { name: tableName(r.slot, role), fib: '' },
        });
        for (const prefix of r.dstPrefixes) {
          out.push({
            menu: '/ip/route',
            key: `r:${r.slot}:${role}:${prefix}`,
            attrs: {
              'dst-address': prefix,
              gateway: path.nextHop4,
              'routing-table': tableName(r.slot, role),
            },
          });
        }
      }
      const m = matchOf(r.class);
      const mark = tableName(r.slot, onBackup.has(r.slot) && r.backup !== null ? 'b' : 'p');
      for (const chain of ['prerouting', 'output']) {
        for (const prefix of r.dstPrefixes) {
          for (const dscp of m?.dscp ?? [undefined]) {
            out.push({
              menu: '/ip/firewall/mangle',
              key: `m:${r.slot}:${chain}:${prefix}:${dscp ?? '*'}`,
              attrs: {
                chain,
                'dst-address': prefix,
                ...classAttrs(m, dscp),
                action: 'mark-routing',
                'new-routing-mark': mark,
                passthrough: 'no',
              },
            });
          }
        }
      }
    }
    return out;
  }

  async apply(policy: SitePolicy): Promise<ApplyOutcome> {
    const inForce = this.#current?.hash ?? null;
    const problems = validatePolicy(policy);
    if (problems.length > 0) {
      const text = problems.map((p) => `${p.path}: ${p.message}`).join('; ');
      return {
        ok: false,
        error: new DriverError('AGENT_ERR_POLICY_INVALID', `invalid policy: ${text}`),
        inForce,
      };
    }
    const refused = await this.#refusal(policy);
    if (refused !== null) return { ok: false, error: refused, inForce };
    const attempts = this.#opts.attempts ?? 3;
    for (let attempt = 1; ; attempt++) {
      try {
        const r = await this.#sync(policy);
        this.#current = policy;
        return { ok: true, hash: policy.hash, ...r };
      } catch (err) {
        if (
          err instanceof Disconnected ||
          (err instanceof DriverError && err.code === 'AGENT_ERR_DRIVER_UNREACHABLE')
        ) {
          if (attempt < attempts) continue; // a fresh session resumes where the device is
          const error =
            err instanceof DriverError
              ? err
              : new DriverError(
                  'AGENT_ERR_DRIVER_UNREACHABLE',
                  `RouterOS session lost during apply: ${err.message}`,
                );
          return { ok: false, error, inForce: null };
        }
        const error =
          err instanceof DriverError
            ? err
            : new DriverError('AGENT_ERR_DRIVER_APPLY', errText(err), { cause: err });
        const restored = await this.#restore();
        return { ok: false, error, inForce: restored ? inForce : null };
      }
    }
  }

  /**
   * Why `policy` cannot go on this device, found before anything is written: it needs SRv6 (never
   * on RouterOS), the device lacks a menu, or transit entries this rendering cannot hold. An
   * unreachable device is not refused here: the apply itself reports it (and retries).
   */
  async #refusal(policy: SitePolicy): Promise<DriverError | null> {
    const srv6Route = policy.routes.find((r) => routeMode(r) === 'srv6');
    const why =
      srv6Route !== undefined
        ? `route ${routeKey(srv6Route)} is in srv6 mode`
        : policy.localSids.length > 0
          ? `${policy.localSids.length} local SIDs to serve`
          : null;
    if (why !== null) {
      return new DriverError(
        'AGENT_ERR_DRIVER_UNSUPPORTED',
        `policy ${policy.version} needs SRv6 (${why}; RouterOS has no SRv6)`,
      );
    }
    const mixed = transitNextHopConflict(policy);
    if (mixed !== null) return new DriverError('AGENT_ERR_POLICY_INVALID', `invalid policy: ${mixed}`);
    const probed = await this.#probe();
    if (probed.reached && !probed.caps.modes.includes('hop-by-hop')) {
      const menus = probed.caps.missing.filter((m) => m !== NO_SRV6);
      return new DriverError(
        'AGENT_ERR_DRIVER_UNSUPPORTED',
        `policy ${policy.version} needs hop-by-hop forwarding, which this RouterOS ` +
          `(${probed.caps.platformVersion}) cannot do: ${menus.join('; ')}`,
      );
    }
    return null;
  }

  async #restore(): Promise<boolean> {
    try {
      if (this.#current !== null) await this.#sync(this.#current);
      else await this.removeAll();
      return true;
    } catch {
      return false;
    }
  }

  async #sync(policy: SitePolicy): Promise<{ changes: number; removed: number }> {
    const owned = await this.#owned();
    const byKey = new Map<string, { menu: Menu; row: Row }>();
    const duplicates: { menu: Menu; row: Row }[] = [];
    for (const [menu, rows] of owned) {
      for (const row of rows) {
        const key = (row['comment'] ?? '').slice(OWNED.length);
        if (byKey.has(key)) duplicates.push({ menu, row });
        else byKey.set(key, { menu, row });
      }
    }
    // Slots on backup stay there while their primary next hop is unchanged.
    const onBackup = new Set<number>();
    for (const r of policy.routes) {
      const rule = [...byKey.entries()].find(([k]) => k.startsWith(`m:${r.slot}:`))?.[1].row;
      const prim = byKey.get(`r:${r.slot}:p:${r.dstPrefixes[0] ?? ''}`)?.row;
      if (rule?.['new-routing-mark'] === tableName(r.slot, 'b') && prim?.['gateway'] === r.primary.nextHop4) {
        onBackup.add(r.slot);
      }
    }
    const want = this.#render(policy, onBackup);
    const wantKeys = new Set(want.map((d) => d.key));
    let changes = 0;
    // Tables before the routes and rules that name them.
    const rank = (m: Menu): number => MENUS.indexOf(m);
    const addOrder = want
      .map((d, i) => ({ d, i }))
      .sort((x, y) => rank(x.d.menu) - rank(y.d.menu) || x.i - y.i);
    for (const { d } of addOrder) {
      const have = byKey.get(d.key);
      const comment = `${OWNED}${d.key}`;
      if (have === undefined) {
        await this.#cmd(`${d.menu}/add`, [...words(d.attrs), `=comment=${comment}`]);
        changes++;
        continue;
      }
      // A matcher the rule no longer has (a class that dropped its ports) is not undone by
      // `set`: it is unset, ports before the protocol they need.
      for (const k of MATCHERS) {
        if (k in have.row && !(k in d.attrs)) {
          await this.#cmd(`${d.menu}/unset`, [`=numbers=${have.row['.id'] ?? ''}`, `=value-name=${k}`]);
          changes++;
        }
      }
      if (Object.entries(d.attrs).some(([k, v]) => (have.row[k] ?? '') !== v)) {
        await this.#cmd(`${d.menu}/set`, [`=.id=${have.row['.id'] ?? ''}`, ...words(d.attrs)]);
        changes++;
      }
    }
    changes += await this.#order(want.filter((d) => d.menu === '/ip/firewall/mangle').map((d) => d.key));
    // Stale objects: mangle rules first (they reference tables), then routes, then tables.
    let removed = 0;
    const stale = [...byKey.entries()]
      .filter(([k]) => !wantKeys.has(k) && !k.startsWith('policy:'))
      .map(([, v]) => v)
      .concat(duplicates.filter((d) => !(d.row['comment'] ?? '').startsWith(`${OWNED}policy:`)));
    for (const menu of ['/ip/firewall/mangle', '/ip/route', '/routing/table'] as const) {
      const ids = stale.filter((s) => s.menu === menu).map((s) => s.row['.id'] ?? '');
      if (ids.length === 0) continue;
      await this.#cmd(`${menu}/remove`, [`=.id=${ids.join(',')}`]);
      removed += ids.length;
    }
    // The marker last: it says which policy the device carries completely.
    const marker = `${OWNED}policy:${policy.hash}:${policy.version}`;
    const markers = (owned.get('/ip/firewall/mangle') ?? []).filter((r) =>
      (r['comment'] ?? '').startsWith(`${OWNED}policy:`),
    );
    const first = markers[0];
    if (first === undefined) {
      await this.#cmd('/ip/firewall/mangle/add', [
        `=chain=${MARKER_CHAIN}`,
        '=action=passthrough',
        '=disabled=yes',
        `=comment=${marker}`,
      ]);
      changes++;
    } else if (first['comment'] !== marker) {
      await this.#cmd('/ip/firewall/mangle/set', [`=.id=${first['.id'] ?? ''}`, `=comment=${marker}`]);
      changes++;
    }
    if (markers.length > 1) {
      await this.#cmd('/ip/firewall/mangle/remove', [
        `=.id=${markers
          .slice(1)
          .map((r) => r['.id'] ?? '')
          .join(',')}`,
      ]);
      removed += markers.length - 1;
    }
    return { changes: changes + removed, removed };
  }

  /**
   * Mangle rules match first-hit in list order, and `add` appends: moves owned rules (`move
   * numbers=X destination=Y` puts X right before Y) until they stand in `keys` order.
   */
  async #order(keys: readonly string[]): Promise<number> {
    const rows = await this.#cmd('/ip/firewall/mangle/print');
    const idOf = new Map<string, string>();
    const wanted = new Set(keys);
    const current: string[] = [];
    for (const r of rows) {
      const key = (r['comment'] ?? '').slice(OWNED.length);
      if (!(r['comment'] ?? '').startsWith(OWNED) || !wanted.has(key) || idOf.has(key)) continue;
      idOf.set(key, r['.id'] ?? '');
      current.push(key);
    }
    let moves = 0;
    for (let i = keys.length - 2; i >= 0; i--) {
      const k = keys[i] ?? '';
      const next = keys[i + 1] ?? '';
      const at = current.indexOf(k);
      if (current[at + 1] === next) continue;
      await this.#cmd('/ip/firewall/mangle/move', [
        `=numbers=${idOf.get(k) ?? ''}`,
        `=destination=${idOf.get(next) ?? ''}`,
      ]);
      current.splice(at, 1);
      current.splice(current.indexOf(next), 0, k);
      moves++;
    }
    return moves;
  }

  async read(): Promise<DriverSnapshot> {
    let owned: Map<Menu, Row[]>;
    try {
      owned = await this.#owned();
    } catch (err) {
      throw err instanceof DriverError
        ? err
        : new DriverError('AGENT_ERR_DRIVER_UNREACHABLE', errText(err), { cause: err });
    }
    const mangle = owned.get('/ip/firewall/mangle') ?? [];
    const marker = mangle
      .map((r) => /^meridian:policy:([0-9a-f]{64}):(\d+)$/.exec(r['comment'] ?? ''))
      .find((m) => m !== null);
    const slots = new Map<number, ActivePath>();
    for (const r of mangle) {
      const m = /^meridian:m:(\d+):/.exec(r['comment'] ?? '');
      if (m === null) continue;
      const slot = Number(m[1]);
      const active: ActivePath = (r['new-routing-mark'] ?? '').endsWith('-b') ? 'backup' : 'primary';
      if (!slots.has(slot) || active === 'backup') slots.set(slot, active);
    }
    return {
      hash: marker?.[1] ?? null,
      version: marker?.[2] !== undefined ? Number(marker[2]) : null,
      routes: [...slots.entries()].sort(([a], [b]) => a - b).map(([slot, active]) => ({ slot, active })),
      objects: [...owned.values()].reduce((n, rows) => n + rows.length, 0),
    };
  }

  #route(key: string): PolicyRoute | DriverError {
    const r = this.#current?.routes.find((x) => routeKey(x) === key);
    return r ?? new DriverError('AGENT_ERR_NO_ROUTE', `no route '${key}' in the applied policy`);
  }

  async #switch(key: string, role: 'p' | 'b'): Promise<RerouteOutcome> {
    const r = this.#route(key);
    if (r instanceof DriverError) return { ok: false, error: r };
    if (role === 'b' && r.backup === null) {
      return {
        ok: false,
        error: new DriverError('AGENT_ERR_NO_BACKUP', `route '${key}' has no backup path`),
      };
    }
    try {
      const rules = await this.#cmd('/ip/firewall/mangle/print');
      const mine = rules.filter((x) => (x['comment'] ?? '').startsWith(`${OWNED}m:${r.slot}:`));
      let changed = false;
      for (const rule of mine) {
        if (rule['new-routing-mark'] === tableName(r.slot, role)) continue;
        await this.#cmd('/ip/firewall/mangle/set', [
          `=.id=${rule['.id'] ?? ''}`,
          `=new-routing-mark=${tableName(r.slot, role)}`,
        ]);
        changed = true;
      }
      return { ok: true, changed };
    } catch (err) {
      const error =
        err instanceof DriverError
          ? err
          : new DriverError('AGENT_ERR_DRIVER_UNREACHABLE', errText(err), { cause: err });
      return { ok: false, error };
    }
  }

  activateBackup(key: string): Promise<RerouteOutcome> {
    return this.#switch(key, 'b');
  }

  activatePrimary(key: string): Promise<RerouteOutcome> {
    return this.#switch(key, 'p');
  }

  async removeAll(): Promise<void> {
    const owned = await this.#owned();
    for (const menu of ['/ip/firewall/mangle', '/ip/route', '/routing/table'] as const) {
      const ids = (owned.get(menu) ?? []).map((r) => r['.id'] ?? '');
      if (ids.length > 0) await this.#cmd(`${menu}/remove`, [`=.id=${ids.join(',')}`]);
    }
    this.#current = null;
  }

  async close(): Promise<void> {
    const api = this.#api;
    this.#api = null;
    if (api !== null) {
      api.removeAllListeners('close');
      await api.close().catch(() => undefined);
    }
  }
}

/** The mangle matchers of a class match (RouterOS matches one DSCP value per rule). */
function classAttrs(m: PolicyClass['match'], dscp: number | undefined): Row {
  const attrs: Row = {};
  if (dscp !== undefined) attrs['dscp'] = String(dscp);
  if (m?.protocol !== undefined) attrs['protocol'] = m.protocol;
  if (m?.ports !== undefined && m.protocol !== undefined) attrs['dst-port'] = m.ports.join(',');
  return attrs;
}

/**
 * The transit objects: one table and default route per outgoing interface used, then the
 * prerouting rules (probe ports first, then classes in match order) that send each entry's
 * packets, told apart by incoming interface and source, to the table of its outgoing interface.
 */
function renderTransit(
  policy: SitePolicy,
  classRank: (id: string) => number,
  matchOf: (id: string) => PolicyClass['match'],
): Desired[] {
  const out: Desired[] = [];
  const index = new Map(policy.interfaces.map((f, i) => [f.ifName, i]));
  const entries = [...(policy.transit ?? [])]
    .map((t) => ({ t, key: transitKey(t), i: index.get(t.outIf) ?? -1 }))
    .sort((a, b) => classRank(a.t.class) - classRank(b.t.class) || cmp(a.key, b.key));
  const used = new Map<number, TransitEntry>();
  for (const e of entries) if (!used.has(e.i)) used.set(e.i, e.t);
  for (const [i, t] of [...used].sort(([a], [b]) => a - b)) {
    out.push({ menu: '/routing/table', key: `tt:${i}`, attrs: { name: transitTable(i), fib: '' } });
    out.push({
      menu: '/ip/route',
      key: `tr:${i}`,
      attrs: { 'dst-address': '0.0.0.0/0', gateway: t.nextHop4, 'routing-table': transitTable(i) },
    });
  }
  const rule = (t: TransitEntry, i: number, src: string, dst: string, match: Row): Row => ({
    chain: 'prerouting',
    'in-interface': t.inIf,
    'src-address': src,
    'dst-address': dst,
    ...match,
    action: 'mark-routing',
    'new-routing-mark': transitTable(i),
    passthrough: 'no',
  });
  for (const { t, key, i } of entries) {
    for (const port of t.probePorts) {
      for (const src of t.srcPrefixes) {
        for (const dst of t.dstPrefixes) {
          out.push({
            menu: '/ip/firewall/mangle',
            key: `tp:${key}:${port}:${src}>${dst}`,
            attrs: rule(t, i, src, dst, { protocol: 'udp', 'src-port': String(port) }),
          });
        }
      }
    }
  }
  for (const { t, key, i } of entries) {
    const m = matchOf(t.class);
    for (const src of t.srcPrefixes) {
      for (const dst of t.dstPrefixes) {
        for (const dscp of m?.dscp ?? [undefined]) {
          out.push({
            menu: '/ip/firewall/mangle',
            key: `tm:${key}:${src}>${dst}:${dscp ?? '*'}`,
            attrs: rule(t, i, src, dst, classAttrs(m, dscp)),
          });
        }
      }
    }
  }
  return out;
}

/**
 * One table per outgoing interface holds one default route: entries leaving by the same
 * interface must agree on the next hop (the compiler takes it from the link's far end).
 */
function transitNextHopConflict(policy: SitePolicy): string | null {
  const seen = new Map<string, { hop: string; at: number }>();
  for (const [at, t] of (policy.transit ?? []).entries()) {
    const first = seen.get(t.outIf);
    if (first === undefined) seen.set(t.outIf, { hop: t.nextHop4, at });
    else if (first.hop !== t.nextHop4) {
      return `/transit/${at}/nextHop4: ${t.nextHop4} differs from /transit/${first.at}/nextHop4 (${first.hop}), both leave by ${t.outIf}`;
    }
  }
  return null;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * node-routeros writes every word of a command as its own small write: with Nagle on, all but
 * the first wait for the router's delayed ACK (~40 ms per command, so seconds per apply and per
 * fast-reroute switch). Its socket is not public; if a release moves it, this does nothing.
 */
function noDelay(api: RouterOSAPI): void {
  const socket = (api as unknown as { connector?: { socket?: { setNoDelay?: (on: boolean) => void } } })
    .connector?.socket;
  socket?.setNoDelay?.(true);
}

function words(attrs: Row): string[] {
  return Object.entries(attrs).map(([k, v]) => `=${k}=${v}`);
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

class TimeoutError extends Error {}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new TimeoutError(`${what}: no answer in ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
