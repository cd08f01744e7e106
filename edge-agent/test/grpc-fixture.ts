// A tiny real AgentControl server for the agent's tests, loaded from the same meridian.proto the
// controller serves: it checks the token, welcomes, sends a probe plan, records what arrives, and
// can be stopped and started again on the same port.
import * as grpc from '@grpc/grpc-js';
import { agentControlClient } from '../src/agent-proto';
import type { ProbePlan } from '../src/probe-engine';

export interface Received {
  readonly at: number;
  readonly session: number;
  readonly msg: Record<string, unknown> & { body: string };
}

export interface TestController {
  readonly address: string;
  readonly port: number;
  readonly received: Received[];
  /** Times (ms) at which a stream was opened. */
  readonly connects: number[];
  /** Sends a message to every open stream. */
  push(msg: Record<string, unknown>): void;
  /** Ends every open stream with UNAVAILABLE and stops listening. */
  stop(): Promise<void>;
  /** Listens again on the same port. */
  restart(): Promise<void>;
  of(body: string): Received[];
}

type Duplex = grpc.ServerDuplexStream<Record<string, unknown>, Record<string, unknown>>;

export async function startTestController(opts: {
  token: string;
  plan: (hello: Record<string, unknown>) => ProbePlan;
  port?: number;
}): Promise<TestController> {
  const received: Received[] = [];
  const connects: number[] = [];
  const open = new Set<Duplex>();
  let server: grpc.Server | undefined;
  let port = opts.port ?? 0;
  let sessions = 0;

  const connect = (call: Duplex): void => {
    const session = ++sessions;
    connects.push(Date.now());
    let hello = false;
    open.add(call);
    call.on('data', (msg: Record<string, unknown> & { body: string }) => {
      received.push({ at: Date.now(), session, msg });
      if (!hello) {
        if (msg.body !== 'hello') {
          call.emit('error', { code: grpc.status.FAILED_PRECONDITION, details: 'hello first' });
          return;
        }
        const h = msg['hello'] as Record<string, unknown>;
        if (h['token'] !== opts.token) {
          call.emit('error', { code: grpc.status.UNAUTHENTICATED, details: 'bad agent token' });
          return;
        }
        hello = true;
        call.write({
          welcome: { controllerVersion: 'test', serverTimeMs: Date.now(), sessionId: String(session) },
        });
        call.write({ probePlan: opts.plan(h) });
      }
    });
    call.on('end', () => {
      open.delete(call);
      call.end();
    });
    call.on('error', () => open.delete(call));
    call.on('cancelled', () => open.delete(call));
  };

  const listen = async (): Promise<void> => {
    const s = new grpc.Server();
    s.addService(agentControlClient().service, { Connect: connect });
    port = await new Promise<number>((resolve, reject) =>
      s.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    server = s;
  };
  await listen();

  return {
    get address() {
      return `127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    received,
    connects,
    push(msg) {
      for (const c of open) c.write(msg);
    },
    async stop() {
      for (const c of open)
        c.emit('error', { code: grpc.status.UNAVAILABLE, details: 'test controller stopping' });
      open.clear();
      const s = server;
      server = undefined;
      if (s) {
        await new Promise<void>((resolve) => s.tryShutdown(() => resolve()));
        s.forceShutdown();
      }
    },
    restart: listen,
    of(body) {
      return received.filter((r) => r.msg.body === body);
    },
  };
}
