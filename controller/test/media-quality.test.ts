/** The simplified E-model behind the media sessions' MOS. */
import t from 'tap';
import { LossWindow, combineLossPct, eModel, mosFromR } from '../src/media-quality';

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

t.test('loss is measured over a recent window, not since the start', (t) => {
  const w = new LossWindow(5000);
  t.equal(w.recent('a'), undefined);
  w.record('a', 0, 100, 0);
  t.same(w.recent('a'), { packets: 100, packetsLost: 0 }, 'one sample: its counters');
  // A lossy second at t = 1 s, then ten clean seconds.
  w.record('a', 1000, 140, 10);
  t.same(w.recent('a'), { packets: 40, packetsLost: 10 });
  for (let at = 2000; at <= 11000; at += 1000) w.record('a', at, 140 + ((at - 1000) / 1000) * 50, 10);
  t.same(w.recent('a'), { packets: 250, packetsLost: 0 }, 'the old burst left the window');
  t.equal(combineLossPct([w.recent('a') ?? { packets: 0, packetsLost: 0 }]), 0);
  // Counters going back: a new leg under the same key.
  w.record('a', 12000, 5, 1);
  t.same(w.recent('a'), { packets: 5, packetsLost: 1 });
  w.prune((k) => k !== 'a');
  t.equal(w.recent('a'), undefined, 'pruned');
  t.end();
});
