import { EventEmitter } from 'node:events';
import type { Device, DeviceInterface } from '@meridian/topology';
import type { Logger } from 'pino';
import { SNMP_TYPE, SnmpClient, oidString, type SnmpErrorCode, type SnmpValue } from './snmp-client';
import {
  counter64FromBytes,
  nextRates,
  uptimeWentBack,
  type CounterReading,
  type RateState,
} from './snmp-rate';

/** IF-MIB / SNMPv2-MIB objects the poller reads. */
export const OID = {
  sysUpTime0: [1, 3, 6, 1, 2, 1, 1, 3, 0],
  ifName: [1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1],
  ifHCInOctets: [1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6],
  ifHCOutOctets: [1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 10],
  ifHighSpeed: [1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 15],
  ifCounterDiscontinuityTime: [1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 19],
  ifOperStatus: [1, 3, 6, 1, 2, 1, 2, 2, 1, 8],
} as const;

/** One interface's state after a poll (emitted once a rate is known, i.e. from the second poll). */
export interface InterfaceCounters {
  readonly device: string;
  readonly ifName: string;
  readonly link: string;
  /** ifOperStatus == up(1). */
  readonly operUp: boolean;
  readonly inBps: number;
  readonly outBps: number;
  /** max(in, out) / ifHighSpeed, percent; null when the device reports no speed. */
  readonly utilPct: number | null;
  /** When the reading was taken, ms since epoch. */
  readonly updatedAt: number;
}

export interface SnmpDeviceError {
  readonly device: string;
  readonly code: SnmpErrorCode;
  readonly message: string;
}

export type SnmpPollerEvents = {
  counters: [InterfaceCounters];
  'device-error': [SnmpDeviceError];
};

export interface SnmpPollerOptions {
  /** Topology devices; those without `snmp` settings are skipped. */
  readonly devices: readonly Device[];
  /** Poll period per device (default 10 s). */
  readonly intervalMs?: number;
  /** Per-request timeout, one attempt (default 2 s). */
  readonly timeoutMs?: number;
  readonly log: Logger;
}

interface DeviceState {
  readonly device: Device & { readonly snmp: NonNullable<Device['snmp']> };
  readonly client: SnmpClient;
  /** ifName -> ifIndex; null: (re)resolve before the next poll. */
  ifIndex: Map<string, number> | null;
  uptime: { ticks: number; atMs: number } | null;
  readonly rates: Map<string, RateState>;
  timer: NodeJS.Timeout | undefined;
  inFlight: Promise<void> | undefined;
  failing: SnmpErrorCode | null;
}

const intValue = (v: SnmpValue | undefined, type: number): number | null =>
  v !== undefined && v.type === type && typeof v.value === 'number' && Number.isFinite(v.value)
    ? v.value
    : null;

const absent = (v: SnmpValue | undefined): boolean =>
  v === undefined ||
  v.type === SNMP_TYPE.NoSuchInstance ||
  v.type === SNMP_TYPE.NoSuchObject ||
  v.type === SNMP_TYPE.EndOfMibView;

function counter64(v: SnmpValue | undefined): bigint | null {
  if (v === undefined || v.type !== SNMP_TYPE.Counter64) return null;
  if (v.raw !== undefined) return counter64FromBytes(v.raw);
  // No raw bytes: the double is only trustworthy below 2^53.
  return typeof v.value === 'number' && Number.isSafeInteger(v.value) && v.value >= 0
    ? BigInt(v.value)
    : null;
}

/**
 * Polls the IF-MIB counters of every SNMP-managed device of the topology and turns them into
 * interface rates and utilisation. Each device has its own session, timer and error state: one
 * dead or babbling device never delays or breaks the others, and nothing a device sends can throw.
 */
export class SnmpPoller extends EventEmitter<SnmpPollerEvents> {
  readonly #log: Logger;
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #devices: DeviceState[];
  readonly #latest = new Map<string, InterfaceCounters>();
  #running = false;
  /** Set by stop(): replies (and cancellations) arriving later are ignored. */
  #closed = false;

  constructor(opts: SnmpPollerOptions) {
    super();
    this.#log = opts.log.child({ module: 'snmp-poller' });
    this.#intervalMs = Math.max(100, opts.intervalMs ?? 10_000);
    this.#timeoutMs = Math.max(10, Math.min(opts.timeoutMs ?? 2000, this.#intervalMs));
    this.#devices = [];
    for (const d of opts.devices) {
      if (!d.snmp) continue;
      this.#devices.push({
        device: d as DeviceState['device'],
        client: new SnmpClient(d.snmp, this.#timeoutMs),
        ifIndex: null,
        uptime: null,
        rates: new Map(),
        timer: undefined,
        inFlight: undefined,
        failing: null,
      });
    }
  }

  get running(): boolean {
    return this.#running;
  }

  /** Starts polling; devices are staggered over one interval. */
  start(): void {
    if (this.#running || this.#closed) return;
    this.#running = true;
    this.#devices.forEach((st, i) => {
      const offset = (this.#intervalMs * i) / Math.max(1, this.#devices.length);
      st.timer = setTimeout(() => this.#loop(st), offset);
    });
    this.#log.info({ devices: this.#devices.length, intervalMs: this.#intervalMs }, 'SNMP poller started');
  }

  /** Stops polling, cancels requests in flight and closes the sessions. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#closed = true;
    for (const st of this.#devices) {
      if (st.timer) clearTimeout(st.timer);
      st.timer = undefined;
      st.client.close();
    }
    await Promise.all(this.#devices.map((st) => st.inFlight ?? Promise.resolve()));
  }

  /** Latest counters of every interface that has a rate. */
  latest(): InterfaceCounters[] {
    return [...this.#latest.values()];
  }

  /** Polls every device once now (what the timer does each interval); resolves when all are done. */
  async pollOnce(): Promise<void> {
    await Promise.all(this.#devices.map((st) => this.#pollGuarded(st)));
  }

  #loop(st: DeviceState): void {
    st.timer = undefined;
    if (!this.#running) return;
    const started = Date.now();
    void this.#pollGuarded(st).then(() => {
      if (!this.#running) return;
      st.timer = setTimeout(() => this.#loop(st), Math.max(0, started + this.#intervalMs - Date.now()));
    });
  }

  #pollGuarded(st: DeviceState): Promise<void> {
    // Never two polls of one device at once: a slow device just polls less often.
    if (st.inFlight) return st.inFlight;
    if (this.#closed) return Promise.resolve();
    st.inFlight = this.#poll(st)
      .catch((err: unknown) => {
        // A bug, not the device: keep polling, say so loudly.
        this.#log.error({ err, device: st.device.id }, 'SNMP poll failed unexpectedly');
      })
      .finally(() => {
        st.inFlight = undefined;
      });
    return st.inFlight;
  }

  #fail(st: DeviceState, code: SnmpErrorCode, message: string): void {
    if (st.failing !== code) this.#log.warn({ device: st.device.id, code }, message);
    st.failing = code;
    this.emit('device-error', { device: st.device.id, code, message });
  }

  async #resolve(st: DeviceState): Promise<boolean> {
    const r = await st.client.walk(OID.ifName);
    if (this.#closed) return false;
    if (!r.ok) {
      this.#fail(st, r.code, `device ${st.device.id}: ifName walk failed: ${r.message}`);
      return false;
    }
    const map = new Map<string, number>();
    for (const vb of r.value) {
      const index = vb.oid[vb.oid.length - 1];
      if (vb.type !== SNMP_TYPE.OctetString || typeof vb.value !== 'string' || index === undefined) continue;
      if (!map.has(vb.value)) map.set(vb.value, index);
    }
    st.ifIndex = map;
    const missing = st.device.interfaces.filter((i) => !map.has(i.ifName));
    if (missing.length > 0) {
      this.#fail(
        st,
        'CTRL_ERR_SNMP_NO_INTERFACE',
        `device ${st.device.id}: no interface named ${missing.map((i) => `'${i.ifName}'`).join(', ')} in ifName ` +
          `(device has ${[...map.keys()].slice(0, 20).join(', ') || 'none'})`,
      );
    }
    this.#log.debug({ device: st.device.id, interfaces: map.size }, 'ifName resolved');
    return true;
  }

  async #poll(st: DeviceState): Promise<void> {
    if (st.ifIndex === null && !(await this.#resolve(st))) return;
    const index = st.ifIndex ?? new Map<string, number>();
    const polled: { itf: DeviceInterface; idx: number }[] = [];
    for (const itf of st.device.interfaces) {
      const idx = index.get(itf.ifName);
      if (idx !== undefined) polled.push({ itf, idx });
    }
    const oids: number[][] = [[...OID.sysUpTime0]];
    for (const { idx } of polled) {
      oids.push(
        [...OID.ifHCInOctets, idx],
        [...OID.ifHCOutOctets, idx],
        [...OID.ifOperStatus, idx],
        [...OID.ifHighSpeed, idx],
        [...OID.ifCounterDiscontinuityTime, idx],
      );
    }
    const r = await st.client.get(oids);
    if (this.#closed) return;
    if (!r.ok) {
      this.#fail(st, r.code, `device ${st.device.id}: poll failed: ${r.message}`);
      return;
    }
    const atMs = Date.now();
    const byOid = new Map<string, SnmpValue>();
    for (const vb of r.value) byOid.set(oidString(vb.oid), vb);
    const uptimeTicks = intValue(byOid.get(oidString(OID.sysUpTime0)), SNMP_TYPE.TimeTicks);
    const problems: string[] = [];
    if (uptimeTicks === null) problems.push('sysUpTime missing or not TimeTicks');

    if (
      uptimeTicks !== null &&
      st.uptime &&
      uptimeWentBack(st.uptime.ticks, uptimeTicks, atMs - st.uptime.atMs)
    ) {
      // Restarted: counters start from zero and ifIndex may have been renumbered.
      this.#log.info(
        { device: st.device.id, was: st.uptime.ticks, now: uptimeTicks },
        'device restarted: re-resolving',
      );
      st.uptime = { ticks: uptimeTicks, atMs };
      st.rates.clear();
      st.ifIndex = null;
      return;
    }
    if (uptimeTicks !== null) st.uptime = { ticks: uptimeTicks, atMs };

    let vanished = false;
    for (const { itf, idx } of polled) {
      const get = (base: readonly number[]): SnmpValue | undefined => byOid.get(`${oidString(base)}.${idx}`);
      const inV = get(OID.ifHCInOctets);
      const outV = get(OID.ifHCOutOctets);
      const operV = get(OID.ifOperStatus);
      if (absent(inV) && absent(outV) && absent(operV)) {
        vanished = true;
        continue;
      }
      const reading: CounterReading = {
        atMs,
        uptimeTicks,
        discontinuityTicks: intValue(get(OID.ifCounterDiscontinuityTime), SNMP_TYPE.TimeTicks),
        inOctets: counter64(inV),
        outOctets: counter64(outV),
        speedMbps: intValue(get(OID.ifHighSpeed), SNMP_TYPE.Gauge32),
      };
      const oper = intValue(operV, SNMP_TYPE.Integer);
      if (reading.inOctets === null) problems.push(`${itf.ifName}: ifHCInOctets missing or not Counter64`);
      if (reading.outOctets === null) problems.push(`${itf.ifName}: ifHCOutOctets missing or not Counter64`);
      if (oper === null) problems.push(`${itf.ifName}: ifOperStatus missing or not INTEGER`);
      const res = nextRates(st.rates.get(itf.ifName), reading);
      st.rates.set(itf.ifName, res.state);
      if (res.notes.some((n) => n !== 'first' && !n.endsWith('-missing'))) {
        this.#log.debug(
          { device: st.device.id, ifName: itf.ifName, notes: res.notes },
          'counter baseline event',
        );
      }
      if (res.inBps === null || res.outBps === null || oper === null) continue;
      const c: InterfaceCounters = {
        device: st.device.id,
        ifName: itf.ifName,
        link: itf.link,
        operUp: oper === 1,
        inBps: res.inBps,
        outBps: res.outBps,
        utilPct: res.utilPct,
        updatedAt: atMs,
      };
      this.#latest.set(`${c.device}\u0000${c.ifName}`, c);
      this.emit('counters', c);
    }
    if (vanished) {
      // An ifIndex no longer exists (interface removed or renumbered): look the names up again.
      st.ifIndex = null;
    }
    if (problems.length > 0) {
      this.#fail(st, 'CTRL_ERR_SNMP_BAD_REPLY', `device ${st.device.id}: ${problems.join('; ')}`);
    } else if (st.failing !== null && st.failing !== 'CTRL_ERR_SNMP_NO_INTERFACE') {
      this.#log.info({ device: st.device.id }, 'device answers again');
      st.failing = null;
    }
  }
}
