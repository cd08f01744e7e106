import net from 'node:net';

/** Asks the kernel for a currently free TCP port on `host` (the port is released before return). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Asks the kernel for a currently free UDP port on `host` (released before return). */
export async function freeUdpPort(host = '127.0.0.1'): Promise<number> {
  const dgram = await import('node:dgram');
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    sock.once('error', reject);
    sock.bind(0, host, () => {
      const { port } = sock.address();
      sock.close(() => resolve(port));
    });
  });
}
