/**
 * Local fast reroute decisions from per-path probes (see `pathProbePort` in policy.ts). The agent
 * feeds every probe outcome of every path of its routes; the decider answers when a route must
 * move to its backup (its primary lost `downAfterMisses` probes in a row while the backup is not
 * known down) or back (the primary answered `upAfterOks` probes in a row, only when `revert` is
 * on: normally the controller's recompute takes over and the next policy resets the route).
 * Pure: no timers, no I/O; the caller applies the action with `PolicyDriver.activateBackup()` /
 * `activatePrimary()` and reports it.
 *
 * Failover time ≈ probe interval × `downAfterMisses` + one kernel operation: with 50 ms probes
 * and 3 misses a dead link anywhere on the path moves traffic in about 150–200 ms.
 */
import { routeKey, type SitePolicy } from './policy';

export interface RerouteOptions {
  /** Consecutive lost probes that declare a path down (default 3). */
  readonly downAfterMisses?: number;
  /** Consecutive answered probes that declare a path up again (default 10). */
  readonly upAfterOks?: number;
  /** Move back to the primary once it is up again (default false: the controller decides). */
  readonly revert?: boolean;
}

export type PathRole = 'primary' | 'backup';

/** What the agent must do for one route. */
export interface RerouteAction {
  readonly action: 'activate-backup' | 'activate-primary';
  readonly routeKey: string;
  readonly slot: number;
  readonly reason: string;
}

interface PathHealth {
  misses: number;
  oks: number;
  down: boolean;
}

interface RouteHealth {
  readonly key: string;
  readonly hasBackup: boolean;
  active: PathRole;
  readonly primary: PathHealth;
  readonly backup: PathHealth;
}

const fresh = (): PathHealth => ({ misses: 0, oks: 0, down: false });

export class RerouteDecider {
  readonly #down: number;
  readonly #up: number;
  readonly #revert: boolean;
  #routes = new Map<number, RouteHealth>();

  constructor(options: RerouteOptions = {}) {
    this.#down = options.downAfterMisses ?? 3;
    this.#up = options.upAfterOks ?? 10;
    this.#revert = options.revert ?? false;
  }

  /**
   * Takes a newly applied policy. Routes whose paths did not change keep their health and active
   * path (the driver keeps them on backup too); others start fresh on their primary.
   */
  setPolicy(policy: SitePolicy, activeBackups: ReadonlySet<number> = new Set()): void {
    const next = new Map<number, RouteHealth>();
    for (const r of policy.routes) {
      const old = this.#routes.get(r.slot);
      const key = routeKey(r);
      if (old !== undefined && old.key === key && old.hasBackup === (r.backup !== null)) {
        next.set(r.slot, old);
      } else {
        next.set(r.slot, {
          key,
          hasBackup: r.backup !== null,
          active: activeBackups.has(r.slot) ? 'backup' : 'primary',
          primary: fresh(),
          backup: fresh(),
        });
      }
    }
    this.#routes = next;
  }

  /** The route was put back on its primary (operator, controller, or revert): fresh health. */
  restored(slot: number): void {
    const r = this.#routes.get(slot);
    if (r === undefined) return;
    r.active = 'primary';
    Object.assign(r.primary, fresh());
    Object.assign(r.backup, fresh());
  }

  /**
   * The kernel has the route on its backup (kept there by the driver across a policy whose
   * primary path did not change): the decider agrees, with fresh health, so that the primary's
   * answers can bring it back (see FastReroute's revert) and its losses keep it where it is.
   */
  heldOnBackup(slot: number): void {
    const r = this.#routes.get(slot);
    if (r === undefined || !r.hasBackup) return;
    r.active = 'backup';
    Object.assign(r.primary, fresh());
    Object.assign(r.backup, fresh());
  }

  /** Which path a route uses according to the decider. */
  active(slot: number): PathRole | null {
    return this.#routes.get(slot)?.active ?? null;
  }

  /**
   * A link is known down (this agent's own link probes, or an alarm from the site that saw it):
   * the paths of the route that use it are down now, without waiting for their probes to miss.
   * They come back up like any path, after `upAfterOks` answered probes.
   */
  linkDown(slot: number, onPrimary: boolean, onBackup: boolean, reason: string): RerouteAction | null {
    const r = this.#routes.get(slot);
    if (r === undefined) return null;
    for (const [on, h] of [
      [onPrimary, r.primary],
      [onBackup, r.backup],
    ] as const) {
      if (!on) continue;
      h.down = true;
      h.oks = 0;
      h.misses = Math.max(h.misses, this.#down);
    }
    if (r.active === 'primary' && r.primary.down && r.hasBackup && !r.backup.down) {
      r.active = 'backup';
      return { action: 'activate-backup', routeKey: r.key, slot, reason };
    }
    if (r.active === 'backup' && r.backup.down && !r.primary.down) {
      r.active = 'primary';
      return { action: 'activate-primary', routeKey: r.key, slot, reason: `${reason}; primary up` };
    }
    return null;
  }

  /** One probe outcome; returns the action to take now, if any. */
  observe(slot: number, role: PathRole, answered: boolean): RerouteAction | null {
    const r = this.#routes.get(slot);
    if (r === undefined) return null;
    const h = role === 'primary' ? r.primary : r.backup;
    if (answered) {
      h.misses = 0;
      h.oks++;
      if (h.down && h.oks >= this.#up) h.down = false;
    } else {
      h.oks = 0;
      h.misses++;
      if (h.misses >= this.#down) h.down = true;
    }
    if (r.active === 'primary' && r.primary.down && r.hasBackup && !r.backup.down) {
      r.active = 'backup';
      return {
        action: 'activate-backup',
        routeKey: r.key,
        slot,
        reason: `primary path lost ${r.primary.misses} probes in a row`,
      };
    }
    if (r.active === 'backup' && this.#revert && !r.primary.down && r.primary.oks >= this.#up) {
      r.active = 'primary';
      return {
        action: 'activate-primary',
        routeKey: r.key,
        slot,
        reason: `primary path answered ${r.primary.oks} probes in a row`,
      };
    }
    if (r.active === 'backup' && r.backup.down && !r.primary.down) {
      r.active = 'primary';
      return { action: 'activate-primary', routeKey: r.key, slot, reason: 'backup path down, primary up' };
    }
    return null;
  }
}
