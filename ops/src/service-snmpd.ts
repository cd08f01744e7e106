import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { freeUdpPort } from './free-port';
import { serviceDir, startService, udpAnswers, type ServiceProcess } from './service-process';

export interface SnmpdService extends ServiceProcess {
  readonly host: string;
  readonly port: number;
  readonly community: string;
}

/** A BER-encoded SNMPv2c GetRequest for sysUpTime.0: used only to see that snmpd answers. */
function sysUpTimeGet(community: string): Buffer {
  const tlv = (tag: number, body: Buffer): Buffer => Buffer.concat([Buffer.from([tag, body.length]), body]);
  const oid = Buffer.from([0x2b, 6, 1, 2, 1, 1, 3, 0]);
  const varbind = tlv(0x30, Buffer.concat([tlv(0x06, oid), Buffer.from([0x05, 0x00])]));
  const pdu = tlv(
    0xa0,
    Buffer.concat([
      tlv(0x02, Buffer.from([1])),
      tlv(0x02, Buffer.from([0])),
      tlv(0x02, Buffer.from([0])),
      tlv(0x30, varbind),
    ]),
  );
  return tlv(0x30, Buffer.concat([tlv(0x02, Buffer.from([1])), tlv(0x04, Buffer.from(community)), pdu]));
}

/**
 * Starts a private net-snmp `snmpd` on a free loopback UDP port with a read-only community. It
 * serves this machine's real IF-MIB (e.g. `lo`), which is what the poller's tests read.
 * Config as measured in FACTS.md: the endpoint goes in the file, not on the command line.
 */
export async function startSnmpd(opts: { community?: string; port?: number } = {}): Promise<SnmpdService> {
  const community = opts.community ?? 'meridian-test';
  const port = opts.port ?? (await freeUdpPort());
  const dir = serviceDir('snmpd');
  const conf = path.join(dir, 'snmpd.conf');
  writeFileSync(conf, `agentAddress udp:127.0.0.1:${port}\nrocommunity ${community} 127.0.0.1\n`);
  return startService(
    {
      name: 'snmpd',
      command: 'snmpd',
      args: ['-f', '-Lo', '-C', '-c', conf, '-p', path.join(dir, 'snmpd.pid')],
      ready: () => udpAnswers('127.0.0.1', port, sysUpTimeGet(community)),
    },
    dir,
    {
      host: '127.0.0.1',
      port,
      community,
    },
  );
}
