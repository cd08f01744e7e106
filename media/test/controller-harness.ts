/**
 * A minimal controller side of `meridian.v1.MediaControl` for the media tests: a real gRPC server
 * on 127.0.0.1 (port 0 or a given port) that checks the token, welcomes nodes, sends orders and
 * matches their results, and records every message a node sends.
 */
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import {
  loadMediaControl,
  type PbControllerMessage,
  type PbHello,
  type PbNodeMessage,
  type PbOrder,
  type PbOrderResult,
} from '../src/index';

type ServerCall = grpc.ServerDuplexStream<PbNodeMessage, PbControllerMessage>;

export interface HarnessNode {
  hello: PbHello;
  call: ServerCall;
  messages: PbNodeMessage[];
}

export class ControllerHarness extends EventEmitter {
  readonly server = new grpc.Server();
  readonly nodes = new Map<string, HarnessNode>();
  /** Every hello received, in order (re-registrations included). */
  readonly hellos: PbHello[] = [];
  port = 0;
  #seq = 0;
  readonly #pending = new Map<string, (r: PbOrderResult) => void>();

  constructor(readonly token: string) {
    super();
    const { service } = loadMediaControl();
    this.server.addService(service, { Connect: (call: ServerCall) => this.#onCall(call) });
  }

  async listen(port = 0): Promise<number> {
    this.port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    return this.port;
  }

  close(): void {
    for (const n of this.nodes.values()) n.call.end();
    this.server.forceShutdown();
  }

  /** Resolves with the node once it said hello (now or later). */
  waitNode(nodeId: string, timeoutMs = 20000): Promise<HarnessNode> {
    const existing = this.nodes.get(nodeId);
    if (existing !== undefined) return Promise.resolve(existing);
    return this.waitFor('node', (n: HarnessNode) => n.hello.nodeId === nodeId, timeoutMs);
  }

  /** Resolves with the first message of `nodeId` matching `pred` (from now on). */
  waitMessage(
    nodeId: string,
    pred: (m: PbNodeMessage) => boolean,
    timeoutMs = 10000,
  ): Promise<PbNodeMessage> {
    return this.waitFor('message', (id: string, m: PbNodeMessage) => id === nodeId && pred(m), timeoutMs, 1);
  }

  waitFor<T>(event: string, pred: (...args: never[]) => boolean, timeoutMs: number, pick = 0): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off(event, on);
        reject(new Error(`harness: timed out waiting for ${event}`));
      }, timeoutMs);
      const on = (...args: unknown[]): void => {
        if (!(pred as (...a: unknown[]) => boolean)(...args)) return;
        clearTimeout(timer);
        this.off(event, on);
        resolve(args[pick] as T);
      };
      this.on(event, on);
    });
  }

  /** Sends an order and resolves with its result. */
  order(
    nodeId: string,
    sessionId: string,
    action: Omit<PbOrder, 'orderId' | 'sessionId'>,
  ): Promise<PbOrderResult> {
    const n = this.nodes.get(nodeId);
    if (n === undefined) return Promise.reject(new Error(`harness: no node ${nodeId}`));
    const orderId = `o${++this.#seq}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`harness: no result for ${orderId}`)), 10000);
      this.#pending.set(orderId, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      n.call.write({ order: { orderId, sessionId, ...action } });
    });
  }

  #onCall(call: ServerCall): void {
    let node: HarnessNode | undefined;
    call.on('data', (m: PbNodeMessage) => {
      if (m.body === 'hello' && m.hello) {
        this.hellos.push(m.hello);
        if (m.hello.token !== this.token) {
          call.write({ refusal: { code: 'CTRL_ERR_UNAUTHENTICATED', message: 'bad token', retry: false } });
          call.end();
          this.emit('refused', m.hello);
          return;
        }
        node = { hello: m.hello, call, messages: [] };
        this.nodes.set(m.hello.nodeId, node);
        call.write({
          welcome: {
            controllerId: 'harness',
            loadIntervalMs: 300,
            healthIntervalMs: 100,
            dropSessionIds: [],
          },
        });
        this.emit('node', node);
        return;
      }
      if (node === undefined) return;
      node.messages.push(m);
      if (m.body === 'result' && m.result) {
        const done = this.#pending.get(m.result.orderId);
        this.#pending.delete(m.result.orderId);
        done?.(m.result);
      }
      this.emit('message', node.hello.nodeId, m);
    });
    call.on('error', () => undefined);
    call.on('end', () => {
      if (node !== undefined && this.nodes.get(node.hello.nodeId) === node)
        this.nodes.delete(node.hello.nodeId);
      call.end();
    });
  }
}
