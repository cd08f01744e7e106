import { freePort } from './free-port';
import { serviceDir, startService, tcpOpen, type ServiceProcess } from './service-process';

export interface RedisService extends ServiceProcess {
  readonly port: number;
  /** `redis://127.0.0.1:PORT` */
  readonly url: string;
}

/**
 * Starts a private `redis-server` on a free loopback port with no persistence, in a temp dir.
 * Debian's redis-server 7 is what production uses too.
 */
export async function startRedis(opts: { port?: number } = {}): Promise<RedisService> {
  const port = opts.port ?? (await freePort());
  const dir = serviceDir('redis');
  return startService(
    {
      name: 'redis',
      command: 'redis-server',
      args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
      ready: () => tcpOpen('127.0.0.1', port),
    },
    dir,
    {
      port,
      url: `redis://127.0.0.1:${port}`,
    },
  );
}
