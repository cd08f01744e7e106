/**
 * Link alarms on the wire: what a receiver takes, and everything it must refuse (forged, tampered,
 * truncated, another key, garbage) without throwing.
 */
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { alarmKey, decodeLinkAlarm, encodeLinkAlarm, looksLikeAlarm, type LinkAlarm } from '../src/index';

const key = alarmKey('token-of-this-deployment');
const alarm: LinkAlarm = {
  origin: 'edge-cd',
  link: 'edge-cd.bj-a.mpls',
  up: false,
  senderId: 0xdeadbeef,
  seq: 42,
  atMs: 1_795_687_796_153,
};

t.test('an alarm round-trips with the shared key', (t) => {
  const buf = encodeLinkAlarm(alarm, key);
  t.ok(looksLikeAlarm(buf));
  t.same(decodeLinkAlarm(buf, key), { ok: true, alarm });
  t.same(decodeLinkAlarm(encodeLinkAlarm({ ...alarm, up: true }, key), key), {
    ok: true,
    alarm: { ...alarm, up: true },
  });
  t.end();
});

t.test('forged, tampered and broken alarms are refused with a reason', (t) => {
  const buf = encodeLinkAlarm(alarm, key);
  t.same(decodeLinkAlarm(buf, alarmKey('another deployment')), { ok: false, reason: 'mac' }, 'other key');
  const flipped = Buffer.from(buf);
  flipped[5] = 1; // up instead of down
  t.same(decodeLinkAlarm(flipped, key), { ok: false, reason: 'mac' }, 'tampered flag');
  const otherLink = Buffer.from(buf);
  const at = otherLink.length - 20;
  otherLink.writeUInt8(otherLink.readUInt8(at) ^ 0x01, at);
  t.same(decodeLinkAlarm(otherLink, key), { ok: false, reason: 'mac' }, 'tampered link id');
  t.same(decodeLinkAlarm(buf.subarray(0, buf.length - 1), key), { ok: false, reason: 'length' }, 'truncated');
  t.same(decodeLinkAlarm(buf.subarray(0, 10), key), { ok: false, reason: 'short' });
  const v2 = Buffer.from(buf);
  v2[4] = 2;
  t.same(decodeLinkAlarm(v2, key), { ok: false, reason: 'version' });
  t.same(decodeLinkAlarm(Buffer.alloc(64), key), { ok: false, reason: 'magic' });
  t.notOk(looksLikeAlarm(Buffer.from('MRDP probe')), 'a probe is not an alarm');
  for (let i = 0; i < 200; i++) {
    const junk = randomBytes(Math.floor(Math.random() * 80));
    if (junk.length >= 4) junk.writeUInt32BE(0x4d524441, 0);
    const d = decodeLinkAlarm(junk, key);
    t.equal(d.ok, false, `random bytes #${i} are not an alarm`);
  }
  t.end();
});
