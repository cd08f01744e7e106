import { writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { freePort } from './free-port';
import { serviceDir, startService, type ServiceProcess } from './service-process';

export interface InfluxService extends ServiceProcess {
  readonly port: number;
  /** `http://127.0.0.1:PORT` (the HTTP API the `influx` client talks to). */
  readonly url: string;
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/ping', timeout: 500 }, (res) => {
      res.resume();
      resolve(res.statusCode === 204);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
  });
}

/**
 * Starts a private InfluxDB 1.x (`influxd`, Debian's 1.6) with its data in a temp dir, HTTP on a
 * free loopback port. Its RPC bind address also needs a port of its own or it collides with any
 * other influxd on the machine.
 */
export async function startInflux(opts: { port?: number } = {}): Promise<InfluxService> {
  const port = opts.port ?? (await freePort());
  const rpcPort = await freePort();
  const dir = serviceDir('influx');
  const conf = path.join(dir, 'influxdb.conf');
  writeFileSync(
    conf,
    [
      'reporting-disabled = true',
      `bind-address = "127.0.0.1:${rpcPort}"`,
      '[meta]',
      `  dir = "${dir}/meta"`,
      '[data]',
      `  dir = "${dir}/data"`,
      `  wal-dir = "${dir}/wal"`,
      '  query-log-enabled = false',
      '[http]',
      `  bind-address = "127.0.0.1:${port}"`,
      '  log-enabled = false',
      '[monitor]',
      '  store-enabled = false',
      '',
    ].join('\n'),
  );
  return startService(
    {
      name: 'influxd',
      command: 'influxd',
      args: ['-config', conf],
      ready: () => ping(port),
      startTimeoutMs: 30_000,
    },
    dir,
    {
      port,
      url: `http://127.0.0.1:${port}`,
    },
  );
}
