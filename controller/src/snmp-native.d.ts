// Minimal typings for snmp-native 1.2.0 (the package ships none): only what snmp-client.ts uses.
declare module 'snmp-native' {
  import type { EventEmitter } from 'node:events';

  export interface VarBind {
    oid: number[];
    type: number;
    value: unknown;
    /** Raw value bytes (set for every decoded type, not only octet strings). */
    valueRaw?: Buffer;
    sendStamp?: number;
    receiveStamp?: number;
  }

  export interface SessionOptions {
    host?: string;
    port?: number;
    community?: string;
    family?: 'udp4' | 'udp6';
    timeouts?: number[];
    bindPort?: number;
  }

  export interface RequestOptions extends SessionOptions {
    oid?: number[] | string;
    oids?: (number[] | string)[];
    abortOnError?: boolean;
    combinedTimeout?: number;
  }

  export type Callback<T> = (error: Error | null, result: T) => void;

  export class Session extends EventEmitter {
    constructor(options?: SessionOptions);
    get(options: RequestOptions, callback: Callback<VarBind[]>): void;
    getNext(options: RequestOptions, callback: Callback<VarBind[]>): void;
    getAll(options: RequestOptions, callback: Callback<VarBind[]>): void;
    getSubtree(options: RequestOptions, callback: Callback<VarBind[]>): void;
    close(): void;
  }

  export const DataTypes: Record<string, number>;
}
