/** The simplified E-model behind the media sessions' MOS. */
import t from 'tap';
import { combineLossPct, eModel, mosFromR } from '../src/media-quality';

t.test('R to MOS follows G.107 Annex B', (t) => {
  t.equal(mosFromR(0), 1);
  t.equal(mosFromR(100), 4.5);
  t.equal(+mosFromR(93.2).toFixed(2), 4.41);
  t.equal(+mosFromR(50).toFixed(2), 2.58);
  t.end();
});

t.test('a clean short path scores high, loss and delay lower it', (t) => {
  const clean = eModel({ codec: 'pcmu', pathDelayMs: 10, lossPct: 0, jitterMs: 1 });
  t.ok(clean.mos > 4.3, `clean MOS ${clean.mos}`);
  t.equal(clean.delayMs, 10 + 20 + 20 + 5);
  const lossy = eModel({ codec: 'pcmu', pathDelayMs: 10, lossPct: 5, jitterMs: 1 });
  t.ok(lossy.mos < clean.mos - 0.5, `5% loss: MOS ${lossy.mos}`);
  const far = eModel({ codec: 'pcmu', pathDelayMs: 300, lossPct: 0, jitterMs: 1 });
  t.ok(far.mos < clean.mos - 0.5, `300 ms path: MOS ${far.mos}`);
  const jittery = eModel({ codec: 'opus', pathDelayMs: 10, lossPct: 0, jitterMs: 60 });
  t.equal(jittery.delayMs, 10 + 120 + 20 + 5, 'the jitter buffer adds twice the jitter');
  t.ok(eModel({ codec: 'pcmu', pathDelayMs: 0, lossPct: 100, jitterMs: 0 }).mos < 1.5, 'total loss');
  t.end();
});

t.test('loss combines along legs as 1 - prod(1 - loss)', (t) => {
  t.equal(combineLossPct([]), 0);
  t.equal(+combineLossPct([{ packets: 90, packetsLost: 10 }]).toFixed(6), 10);
  t.equal(
    +combineLossPct([
      { packets: 90, packetsLost: 10 },
      { packets: 90, packetsLost: 10 },
    ]).toFixed(6),
    19,
  );
  t.equal(combineLossPct([{ packets: 0, packetsLost: 0 }]), 0, 'no traffic: no loss');
  t.end();
});
