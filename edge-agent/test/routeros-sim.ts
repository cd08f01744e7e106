/**
 * A protocol-level MikroTik RouterOS API simulator (test only): a real TCP server speaking the
 * API wire format — words with RouterOS length encoding, sentences ended by an empty word,
 * post-6.43 `/login` (=name, =password), `.tag`, replies `!re` / `!done` / `!trap` / `!fatal` —
 * keeping a configuration: menus `/ip/route`, `/ip/firewall/mangle`, `/routing/table`,
 * `/ip/address`, with `add` (→ `=ret=*N`), `set`, `remove` (`=.id=*N`, comma lists), `move`
 * (`=numbers=` before `=destination=`), `unset` (`=numbers=`, `=value-name=`), `print`
 * (`?name=value` queries, ANDed; `=.proplist=`; `=count-only=` → `!done =ret=N`), and the
 * read-only `/system/resource` (`version`). A device without some menus (RouterOS v6 has no
 * `/routing/table`) is `menus`: the others answer `!trap no such command prefix`, as RouterOS
 * does. With `interfaces`, an `in-interface` naming another interface is refused. Faults can be
 * injected per command number or on the first command matching a predicate: a `!trap`, a
 * `!fatal` (then close), or a dropped connection without an answer.
 */
import { createServer, type Server, type Socket } from 'node:net';

export type SimFault = 'trap' | 'fatal' | 'drop';

export interface RouterOsSimOptions {
  readonly user?: string;
  readonly password?: string;
  /** `/system/resource` `version` (default `7.15.3 (stable)`). */
  readonly version?: string;
  /** The configuration menus the device has (default: all of {@link SIM_MENUS}). */
  readonly menus?: readonly string[];
  /** The device's interfaces; when given, `in-interface` must name one of them. */
  readonly interfaces?: readonly string[];
}

type Row = Record<string, string>;

export const SIM_MENUS = ['/ip/route', '/ip/firewall/mangle', '/routing/table', '/ip/address'] as const;
const RESOURCE = '/system/resource';

function encodeLength(len: number): Buffer {
  if (len < 0x80) return Buffer.from([len]);
  if (len < 0x4000) return Buffer.from([((len >> 8) & 0xff) | 0x80, len & 0xff]);
  if (len < 0x200000) return Buffer.from([((len >> 16) & 0xff) | 0xc0, (len >> 8) & 0xff, len & 0xff]);
  if (len < 0x10000000) {
    return Buffer.from([((len >> 24) & 0xff) | 0xe0, (len >> 16) & 0xff, (len >> 8) & 0xff, len & 0xff]);
  }
  return Buffer.from([0xf0, (len >> 24) & 0xff, (len >> 16) & 0xff, (len >> 8) & 0xff, len & 0xff]);
}

/** Encodes one sentence (words then the empty word). */
export function encodeSentence(words: readonly string[]): Buffer {
  const parts: Buffer[] = [];
  for (const w of words) {
    const b = Buffer.from(w, 'latin1');
    parts.push(encodeLength(b.length), b);
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

/** Incremental decoder: feed bytes, get complete sentences. */
export class SentenceDecoder {
  #buf = Buffer.alloc(0);
  #words: string[] = [];

  push(chunk: Buffer): string[][] {
    this.#buf = Buffer.concat([this.#buf, chunk]);
    const out: string[][] = [];
    for (;;) {
      const b0 = this.#buf[0];
      if (b0 === undefined) break;
      let len: number;
      let hdr: number;
      if ((b0 & 0x80) === 0) [len, hdr] = [b0, 1];
      else if ((b0 & 0xc0) === 0x80) [len, hdr] = [((b0 & 0x3f) << 8) | (this.#buf[1] ?? 0), 2];
      else if ((b0 & 0xe0) === 0xc0)
        [len, hdr] = [((b0 & 0x1f) << 16) | ((this.#buf[1] ?? 0) << 8) | (this.#buf[2] ?? 0), 3];
      else if ((b0 & 0xf0) === 0xe0) {
        [len, hdr] = [
          (((b0 & 0x0f) << 24) |
            ((this.#buf[1] ?? 0) << 16) |
            ((this.#buf[2] ?? 0) << 8) |
            (this.#buf[3] ?? 0)) >>>
            0,
          4,
        ];
      } else [len, hdr] = [this.#buf.readUInt32BE(1), 5];
      if (this.#buf.length < hdr + len) break;
      const word = this.#buf.subarray(hdr, hdr + len).toString('latin1');
      this.#buf = this.#buf.subarray(hdr + len);
      if (len === 0) {
        out.push(this.#words);
        this.#words = [];
      } else this.#words.push(word);
    }
    return out;
  }
}

class SimError extends Error {
  constructor(
    message: string,
    readonly category = 1,
  ) {
    super(message);
  }
}

/** The simulator. `config` is the live configuration (menu → rows), for assertions. */
export class RouterOsSim {
  readonly config: Map<string, Row[]>;
  /** Commands received after login, in order (for assertions). */
  readonly log: string[] = [];
  #nextId = 1;
  #commandCount = 0;
  #faults = new Map<number, SimFault>();
  #matchFaults: { match: (line: string) => boolean; fault: SimFault }[] = [];
  /** Faults injected so far (for assertions that one really happened). */
  readonly faulted: string[] = [];
  readonly #version: string;
  readonly #interfaces: ReadonlySet<string> | null;
  #server: Server | null = null;
  readonly #sockets = new Set<Socket>();
  readonly #user: string;
  readonly #password: string;
  port = 0;

  constructor(options: RouterOsSimOptions = {}) {
    this.#user = options.user ?? 'admin';
    this.#password = options.password ?? 'secret';
    this.#version = options.version ?? '7.15.3 (stable)';
    this.#interfaces = options.interfaces === undefined ? null : new Set(options.interfaces);
    this.config = new Map((options.menus ?? SIM_MENUS).map((m) => [m, []]));
  }

  /** Injects a fault at the Nth command (1-based, counted over all sessions, login excluded). */
  failAt(n: number, fault: SimFault): void {
    this.#faults.set(n, fault);
  }

  /**
   * Injects a fault at the first command (after this call) whose logged line (`/menu/verb
   * =k=v …`) matches; each call injects one fault.
   */
  failOn(match: (line: string) => boolean, fault: SimFault): void {
    this.#matchFaults.push({ match, fault });
  }

  /** Commands executed so far (login excluded). */
  get commandCount(): number {
    return this.#commandCount;
  }

  rows(menu: string): Row[] {
    return this.config.get(menu) ?? [];
  }

  async start(): Promise<number> {
    const server = createServer((s) => this.#session(s));
    this.#server = server;
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
    const addr = server.address();
    this.port = typeof addr === 'object' && addr !== null ? addr.port : 0;
    return this.port;
  }

  /** Drops every open connection (the router "rebooted" its API service). */
  dropAll(): void {
    for (const s of this.#sockets) s.destroy();
  }

  async close(): Promise<void> {
    this.dropAll();
    const server = this.#server;
    this.#server = null;
    if (server !== null) await new Promise<void>((res) => server.close(() => res()));
  }

  #session(socket: Socket): void {
    this.#sockets.add(socket);
    // Replies are several small writes (`!re`… `!done`): without this, Nagle holds each one
    // back for the client's delayed ACK (~40 ms a command).
    socket.setNoDelay(true);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => undefined);
    const decoder = new SentenceDecoder();
    let loggedIn = false;
    const send = (words: string[]): void => {
      if (!socket.destroyed) socket.write(encodeSentence(words));
    };
    socket.on('data', (chunk: Buffer) => {
      for (const sentence of decoder.push(chunk)) {
        const [command, ...rest] = sentence;
        if (command === undefined) continue;
        const attrs: Row = {};
        const queries: [string, string][] = [];
        let tag: string | undefined;
        for (const w of rest) {
          if (w.startsWith('.tag=')) tag = w.slice(5);
          else if (w.startsWith('=')) {
            const eq = w.indexOf('=', 1);
            if (eq < 0) attrs[w.slice(1)] = '';
            else attrs[w.slice(1, eq)] = w.slice(eq + 1);
          } else if (w.startsWith('?')) {
            const eq = w.indexOf('=', 1);
            queries.push(eq < 0 ? [w.slice(1), ''] : [w.slice(1, eq), w.slice(eq + 1)]);
          }
        }
        const tagged = (words: string[]): string[] => {
          const [head, ...tail] = words;
          return tag === undefined ? words : [head ?? '', `.tag=${tag}`, ...tail];
        };
        if (command === '/login') {
          if (attrs['name'] === this.#user && attrs['password'] === this.#password) {
            loggedIn = true;
            send(tagged(['!done']));
          } else {
            send(tagged(['!trap', '=message=invalid user name or password (6)']));
            send(tagged(['!done']));
          }
          continue;
        }
        if (!loggedIn) {
          send(tagged(['!fatal', 'not logged in']));
          socket.end();
          return;
        }
        this.#commandCount++;
        const line = [command, ...rest.filter((w) => !w.startsWith('.tag='))].join(' ');
        this.log.push(line);
        const byMatch = this.#matchFaults.findIndex((f) => f.match(line));
        const fault =
          byMatch >= 0
            ? this.#matchFaults.splice(byMatch, 1)[0]?.fault
            : this.#faults.get(this.#commandCount);
        if (fault !== undefined) this.faulted.push(`${fault} at ${line}`);
        if (fault === 'drop') {
          socket.destroy();
          return;
        }
        if (fault === 'fatal') {
          send(['!fatal', 'session terminated on request']);
          socket.end();
          return;
        }
        if (fault === 'trap') {
          send(tagged(['!trap', '=category=2', '=message=failure: simulated device error']));
          send(tagged(['!done']));
          continue;
        }
        try {
          const replies = this.#execute(command, attrs, queries);
          for (const r of replies) send(tagged(['!re', ...Object.entries(r).map(([k, v]) => `=${k}=${v}`)]));
          const ret = replies.ret;
          send(tagged(ret !== undefined ? ['!done', `=ret=${ret}`] : ['!done']));
        } catch (err) {
          const e = err instanceof SimError ? err : new SimError(String(err));
          send(tagged(['!trap', `=category=${e.category}`, `=message=${e.message}`]));
          send(tagged(['!done']));
        }
      }
    });
  }

  #execute(command: string, attrs: Row, queries: [string, string][]): Row[] & { ret?: string } {
    const slash = command.lastIndexOf('/');
    const menu = command.slice(0, slash);
    const verb = command.slice(slash + 1);
    if (menu === RESOURCE) {
      if (verb !== 'print') throw new SimError('no such command', 0);
      return [{ version: this.#version, 'architecture-name': 'x86_64', 'board-name': 'CHR', uptime: '1d' }];
    }
    const rows = this.config.get(menu);
    if (rows === undefined) throw new SimError('no such command prefix', 0);
    const find = (id: string | undefined): Row => {
      const row = rows.find((r) => r['.id'] === id);
      if (row === undefined) throw new SimError('no such item');
      return row;
    };
    switch (verb) {
      case 'print': {
        const props = attrs['.proplist']?.split(',');
        const matching = rows.filter((r) => queries.every(([k, v]) => (r[k] ?? '') === v));
        if ('count-only' in attrs) {
          const res: Row[] & { ret?: string } = [];
          res.ret = String(matching.length);
          return res;
        }
        const out = matching.map((r) =>
          props === undefined
            ? { ...r }
            : Object.fromEntries(props.filter((p) => p in r).map((p) => [p, r[p] ?? ''])),
        );
        return out;
      }
      case 'add': {
        this.#validate(menu, attrs, null);
        const id = `*${(this.#nextId++).toString(16).toUpperCase()}`;
        rows.push({ '.id': id, ...this.#defaults(menu), ...attrs });
        const res: Row[] & { ret?: string } = [];
        res.ret = id;
        return res;
      }
      case 'set': {
        const { '.id': id, ...change } = attrs;
        const row = find(id);
        this.#validate(menu, { ...row, ...change }, row);
        Object.assign(row, change);
        return [];
      }
      case 'unset': {
        // RouterOS: `unset numbers=<id> value-name=<property>` clears one optional property.
        const row = find(attrs['numbers']);
        const name = attrs['value-name'] ?? '';
        if (name === '' || name === '.id' || name === 'chain' || name === 'action') {
          throw new SimError(`failure: cannot unset ${name}`);
        }
        const { [name]: _gone, ...rest } = row;
        this.#validate(menu, rest, row);
        delete row[name];
        return [];
      }
      case 'remove': {
        const ids = (attrs['.id'] ?? '').split(',');
        for (const id of ids) find(id);
        for (const id of ids)
          rows.splice(
            rows.findIndex((r) => r['.id'] === id),
            1,
          );
        return [];
      }
      case 'move': {
        // RouterOS: `numbers` (ids) are moved to just before `destination` (or to the end).
        const ids = (attrs['numbers'] ?? '').split(',');
        const moving = ids.map((id) => find(id));
        const dest = attrs['destination'];
        if (dest !== undefined && dest !== '') find(dest);
        for (const m of moving) rows.splice(rows.indexOf(m), 1);
        const at = dest !== undefined && dest !== '' ? rows.findIndex((r) => r['.id'] === dest) : rows.length;
        rows.splice(at, 0, ...moving);
        return [];
      }
      default:
        throw new SimError('no such command', 0);
    }
  }

  #defaults(menu: string): Row {
    switch (menu) {
      case '/ip/route':
        return { 'routing-table': 'main', distance: '1', disabled: 'false' };
      case '/ip/firewall/mangle':
        return { disabled: 'false', passthrough: 'true' };
      default:
        return { disabled: 'false' };
    }
  }

  #validate(menu: string, row: Row, existing: Row | null): void {
    const tables = new Set(['main', ...this.rows('/routing/table').map((r) => r['name'] ?? '')]);
    switch (menu) {
      case '/routing/table': {
        if (!row['name']) throw new SimError('failure: name must be set');
        const dup = this.rows(menu).find((r) => r['name'] === row['name'] && r !== existing);
        if (dup !== undefined) throw new SimError('failure: entry already exists');
        return;
      }
      case '/ip/route':
        if (!row['dst-address'] || !/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(row['dst-address'])) {
          throw new SimError('invalid value for argument dst-address');
        }
        if (!row['gateway']) throw new SimError('failure: gateway must be set');
        if (row['routing-table'] !== undefined && !tables.has(row['routing-table'])) {
          throw new SimError('input does not match any value of routing-table');
        }
        return;
      case '/ip/firewall/mangle':
        if (!row['chain'] || !row['action']) throw new SimError('failure: chain and action must be set');
        if (row['action'] === 'mark-routing' && !tables.has(row['new-routing-mark'] ?? '')) {
          throw new SimError('input does not match any value of new-routing-mark');
        }
        if (row['dscp'] !== undefined && !/^\d+$/.test(row['dscp']))
          throw new SimError('invalid value for argument dscp');
        for (const f of ['src-address', 'dst-address']) {
          const v = row[f];
          if (v !== undefined && !/^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(v)) {
            throw new SimError(`invalid value for argument ${f}`);
          }
        }
        for (const f of ['src-port', 'dst-port']) {
          const v = row[f];
          if (v !== undefined && !/^\d+(,\d+)*$/.test(v))
            throw new SimError(`invalid value for argument ${f}`);
          if (v !== undefined && row['protocol'] !== 'udp' && row['protocol'] !== 'tcp') {
            throw new SimError('failure: can have port only when protocol is tcp or udp');
          }
        }
        if (
          row['in-interface'] !== undefined &&
          this.#interfaces !== null &&
          !this.#interfaces.has(row['in-interface'])
        ) {
          throw new SimError('input does not match any value of interface');
        }
        return;
      default:
        return;
    }
  }
}
