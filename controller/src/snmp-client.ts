/**
 * A defensive wrapper around one snmp-native session per device. snmp-native parses replies
 * inside its socket handler: a garbage datagram makes the session emit `'error'` (which would
 * crash the process without a listener) and a reply that parses but lacks varbinds can throw from
 * its own `getSubtree`. So this wrapper listens for those errors, never uses `getSubtree`, checks
 * every varbind it hands out, and turns every failure into a value:
 * `{ ok: false, code, message }`, never a throw.
 */
import { Session, type VarBind } from 'snmp-native';

/** ASN.1 / SMIv2 type tags as they appear in `VarBind.type`. */
export const SNMP_TYPE = {
  Integer: 0x02,
  OctetString: 0x04,
  Null: 0x05,
  ObjectIdentifier: 0x06,
  Counter32: 0x41,
  Gauge32: 0x42,
  TimeTicks: 0x43,
  Counter64: 0x46,
  NoSuchObject: 0x80,
  NoSuchInstance: 0x81,
  EndOfMibView: 0x82,
} as const;

/** Stable codes of per-device SNMP failures (merge into the controller's catalog as CTRL_ERR_*). */
export type SnmpErrorCode =
  /** No reply within the timeout (device down, wrong community: snmpd stays silent, or firewall). */
  | 'CTRL_ERR_SNMP_TIMEOUT'
  /** Replies arrived but were not SNMP, or not the varbinds asked for (wrong types, missing, garbage). */
  | 'CTRL_ERR_SNMP_BAD_REPLY'
  /** The agent answered with an SNMP error-status (noSuchName, genErr, ...). */
  | 'CTRL_ERR_SNMP_ERROR_STATUS'
  /** A configured ifName is not in the device's ifName table. */
  | 'CTRL_ERR_SNMP_NO_INTERFACE';

export type SnmpResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly code: SnmpErrorCode; readonly message: string };

/** A checked varbind: the OID is an integer array, the type a known tag. */
export interface SnmpValue {
  readonly oid: readonly number[];
  readonly type: number;
  readonly value: unknown;
  readonly raw: Buffer | undefined;
}

export interface SnmpClientTarget {
  readonly host: string;
  readonly port: number;
  readonly community: string;
}

export const oidString = (oid: readonly number[]): string => oid.join('.');

/** True when `oid` lies strictly below `root`. */
export function oidUnder(root: readonly number[], oid: readonly number[]): boolean {
  if (oid.length <= root.length) return false;
  for (let i = 0; i < root.length; i++) if (oid[i] !== root[i]) return false;
  return true;
}

function compareOids(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

function checkVarbinds(vbs: unknown): SnmpValue[] | null {
  if (!Array.isArray(vbs)) return null;
  const out: SnmpValue[] = [];
  for (const vb of vbs as VarBind[]) {
    if (typeof vb !== 'object' || vb === null) return null;
    if (!Array.isArray(vb.oid) || !vb.oid.every((n) => Number.isInteger(n) && n >= 0)) return null;
    if (typeof vb.type !== 'number') return null;
    out.push({
      oid: vb.oid,
      type: vb.type,
      value: vb.value,
      raw: Buffer.isBuffer(vb.valueRaw) ? vb.valueRaw : undefined,
    });
  }
  return out;
}

export class SnmpClient {
  readonly #target: SnmpClientTarget;
  readonly #timeoutMs: number;
  #session: Session | undefined;
  /** Datagrams the session could not parse (counted per device; a timeout after one is a bad reply). */
  #garbage = 0;
  #lastGarbage = '';

  constructor(target: SnmpClientTarget, timeoutMs: number) {
    this.#target = target;
    this.#timeoutMs = timeoutMs;
  }

  /** Datagrams from the device port that were not SNMP. */
  get garbage(): number {
    return this.#garbage;
  }

  #open(): Session {
    if (this.#session) return this.#session;
    const s = new Session({
      host: this.#target.host,
      port: this.#target.port,
      community: this.#target.community,
      family: this.#target.host.includes(':') ? 'udp6' : 'udp4',
      timeouts: [this.#timeoutMs],
    });
    s.on('error', (err: unknown) => {
      this.#garbage++;
      this.#lastGarbage = err instanceof Error ? err.message : String(err);
    });
    this.#session = s;
    return s;
  }

  /** GET of several OIDs (packed 16 per PDU by snmp-native, sent one PDU after the other). */
  get(oids: readonly (readonly number[])[]): Promise<SnmpResult<SnmpValue[]>> {
    if (oids.length === 0) return Promise.resolve({ ok: true, value: [] });
    return this.#call((s, cb) =>
      s.getAll(
        { oids: oids.map((o) => [...o]), abortOnError: true, combinedTimeout: this.#timeoutMs * 2 + 50 },
        cb,
      ),
    );
  }

  /** Walks the subtree under `root` with GETNEXT; `maxRows` bounds a device that never ends it. */
  async walk(root: readonly number[], maxRows = 10_000): Promise<SnmpResult<SnmpValue[]>> {
    const rows: SnmpValue[] = [];
    let cursor: readonly number[] = root;
    for (let i = 0; i < maxRows; i++) {
      const r = await this.#call((s, cb) => s.getNext({ oid: [...cursor] }, cb));
      if (!r.ok) return r;
      const vb = r.value[0];
      if (vb === undefined) return this.#bad(`GETNEXT ${oidString(cursor)} returned no varbind`);
      if (
        !oidUnder(root, vb.oid) ||
        vb.type === SNMP_TYPE.EndOfMibView ||
        vb.type === SNMP_TYPE.NoSuchObject ||
        vb.type === SNMP_TYPE.NoSuchInstance
      ) {
        return { ok: true, value: rows };
      }
      if (compareOids(vb.oid, cursor) <= 0) {
        return this.#bad(`GETNEXT ${oidString(cursor)} went backwards to ${oidString(vb.oid)}`);
      }
      rows.push(vb);
      cursor = vb.oid;
    }
    return this.#bad(`walk of ${oidString(root)} did not end within ${maxRows} rows`);
  }

  close(): void {
    const s = this.#session;
    this.#session = undefined;
    try {
      s?.close();
    } catch {
      // already closed
    }
  }

  #bad(message: string): SnmpResult<never> {
    return { ok: false, code: 'CTRL_ERR_SNMP_BAD_REPLY', message };
  }

  #call(
    send: (s: Session, cb: (err: Error | null, vbs: unknown) => void) => void,
  ): Promise<SnmpResult<SnmpValue[]>> {
    const garbageBefore = this.#garbage;
    const where = `${this.#target.host}:${this.#target.port}`;
    return new Promise((resolve) => {
      let settled = false;
      // The callback runs inside snmp-native's socket handler: nothing may escape from it.
      const cb = (err: Error | null, vbs: unknown): void => {
        if (settled) return;
        settled = true;
        try {
          if (err) {
            const msg = err instanceof Error ? err.message : String(err);
            if (msg === 'Timeout') {
              resolve(
                this.#garbage > garbageBefore
                  ? this.#bad(`${where} answered with unparseable datagrams (${this.#lastGarbage})`)
                  : {
                      ok: false,
                      code: 'CTRL_ERR_SNMP_TIMEOUT',
                      message: `no SNMP reply from ${where} within ${this.#timeoutMs} ms`,
                    },
              );
            } else if (msg === 'Cancelled') {
              resolve({
                ok: false,
                code: 'CTRL_ERR_SNMP_TIMEOUT',
                message: `SNMP request to ${where} cancelled`,
              });
            } else {
              resolve({ ok: false, code: 'CTRL_ERR_SNMP_ERROR_STATUS', message: `${where} returned ${msg}` });
            }
            return;
          }
          const checked = checkVarbinds(vbs);
          resolve(checked ? { ok: true, value: checked } : this.#bad(`${where} returned malformed varbinds`));
        } catch (e) {
          resolve(this.#bad(`${where}: ${(e as Error).message}`));
        }
      };
      try {
        send(this.#open(), cb);
      } catch (e) {
        // snmp-native throws synchronously on e.g. a closed socket or a request-id overflow.
        if (!settled) {
          settled = true;
          resolve({
            ok: false,
            code: 'CTRL_ERR_SNMP_TIMEOUT',
            message: `cannot send to ${where}: ${(e as Error).message}`,
          });
        }
      }
    });
  }
}
