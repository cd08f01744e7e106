import t from 'tap';
import {
  COUNTER64_MODULUS,
  counter64FromBytes,
  nextRates,
  uptimeWentBack,
  type CounterReading,
  type RateState,
} from '../src/snmp-rate';

const reading = (over: Partial<CounterReading> & { atMs: number }): CounterReading => ({
  uptimeTicks: 100_000 + over.atMs / 10,
  discontinuityTicks: 0,
  inOctets: 0n,
  outOctets: 0n,
  speedMbps: 1000,
  ...over,
});

function run(readings: CounterReading[]) {
  let state: RateState | undefined;
  return readings.map((r) => {
    const res = nextRates(state, r);
    state = res.state;
    return res;
  });
}

t.test('steady counters give bits per second and utilisation', (t) => {
  const [first, second] = run([
    reading({ atMs: 0, inOctets: 1000n, outOctets: 5000n }),
    reading({ atMs: 10_000, inOctets: 1000n + 12_500_000n, outOctets: 5000n + 1_250_000n }),
  ]);
  t.same(first?.notes, ['first']);
  t.equal(first?.inBps, null, 'no rate from a single reading');
  t.equal(second?.inBps, 10_000_000);
  t.equal(second?.outBps, 1_000_000);
  t.equal(second?.utilPct, 1, '10 Mbit/s on a 1 Gbit/s interface');
  t.end();
});

t.test('exact above 2^53: a double would lose these octets', (t) => {
  const base = (1n << 60n) + 3n;
  const [, r] = run([
    reading({ atMs: 0, inOctets: base, outOctets: base }),
    reading({ atMs: 1000, inOctets: base + 1n, outOctets: base + 125n }),
  ]);
  t.equal(r?.inBps, 8);
  t.equal(r?.outBps, 1000);
  t.end();
});

t.test('64-bit wrap is a rate, not a spike or a reset', (t) => {
  const nearTop = COUNTER64_MODULUS - 1000n;
  const [, r] = run([
    reading({ atMs: 0, inOctets: nearTop, outOctets: 0n }),
    reading({ atMs: 1000, inOctets: 24_000n, outOctets: 0n }),
  ]);
  t.equal(r?.inBps, 25_000 * 8);
  t.ok(r?.notes.includes('in-wrap'));
  t.end();
});

t.test('device restart (uptime went back): baseline reset, no bogus spike, rates resume', (t) => {
  const rs = run([
    reading({ atMs: 0, uptimeTicks: 900_000, inOctets: 9_000_000_000n, outOctets: 7_000_000_000n }),
    reading({ atMs: 10_000, uptimeTicks: 901_000, inOctets: 9_000_125_000n, outOctets: 7_000_000_000n }),
    // Rebooted: uptime 5 s, counters near zero (a naive delta would be a 2^64 wrap or negative).
    reading({ atMs: 20_000, uptimeTicks: 500, inOctets: 4000n, outOctets: 100n }),
    reading({ atMs: 30_000, uptimeTicks: 1500, inOctets: 4000n + 125_000n, outOctets: 100n }),
  ]);
  t.equal(rs[1]?.inBps, 100_000);
  t.same(rs[2]?.notes, ['restart']);
  t.equal(rs[2]?.inBps, null);
  t.equal(rs[2]?.outBps, null);
  t.equal(rs[3]?.inBps, 100_000, 'next interval measured from the post-restart baseline');
  t.end();
});

t.test('counter reset without a restart (no discontinuity object): implausible, dropped', (t) => {
  const rs = run([
    reading({ atMs: 0, discontinuityTicks: null, inOctets: 5_000_000_000_000n, outOctets: 0n }),
    reading({ atMs: 1000, discontinuityTicks: null, inOctets: 10n, outOctets: 0n }),
    reading({ atMs: 2000, discontinuityTicks: null, inOctets: 1010n, outOctets: 0n }),
  ]);
  t.equal(rs[1]?.inBps, null);
  t.ok(rs[1]?.notes.includes('in-implausible'));
  t.equal(rs[2]?.inBps, 8000, 'rebased on the low value');
  t.end();
});

t.test('ifCounterDiscontinuityTime change resets the baseline', (t) => {
  const rs = run([
    reading({ atMs: 0, discontinuityTicks: 10, inOctets: 1000n }),
    reading({ atMs: 1000, discontinuityTicks: 5000, inOctets: 2000n }),
    reading({ atMs: 2000, discontinuityTicks: 5000, inOctets: 3000n }),
  ]);
  t.same(rs[1]?.notes, ['discontinuity']);
  t.equal(rs[1]?.inBps, null);
  t.equal(rs[2]?.inBps, 8000);
  t.end();
});

t.test('missing values: no rate now, average over the gap next time; unknown speed: no utilisation', (t) => {
  const rs = run([
    reading({ atMs: 0, inOctets: 0n, outOctets: 0n, speedMbps: 0 }),
    reading({ atMs: 1000, inOctets: null, outOctets: 1000n, speedMbps: 0 }),
    reading({ atMs: 2000, inOctets: 2000n, outOctets: 2000n, speedMbps: 0 }),
  ]);
  t.equal(rs[1]?.inBps, null);
  t.ok(rs[1]?.notes.includes('in-missing'));
  t.equal(rs[1]?.outBps, 8000);
  t.equal(rs[2]?.inBps, 8000, '2000 octets over 2 s');
  t.equal(rs[2]?.utilPct, null);
  t.end();
});

t.test('sysUpTime 32-bit wrap is not a restart', (t) => {
  const top = 2 ** 32 - 50; // 0.5 s before the wrap
  t.notOk(uptimeWentBack(top, 50, 1000), 'wrapped where the elapsed time says');
  t.ok(uptimeWentBack(top, 50_000_000, 1000), 'far from where a wrap would land');
  t.ok(uptimeWentBack(1_000_000, 200, 10_000), 'plain restart');
  t.notOk(uptimeWentBack(1000, 2000, 10_000));
  t.end();
});

t.test('Counter64 from BER bytes', (t) => {
  t.equal(counter64FromBytes(Buffer.from('00ffffffffffffffff', 'hex')), COUNTER64_MODULUS - 1n);
  t.equal(counter64FromBytes(Buffer.from('20000000000001', 'hex')), (1n << 53n) + 1n);
  t.equal(counter64FromBytes(Buffer.from('01ffffffffffffffff', 'hex')), null, 'more than 64 bits');
  t.equal(counter64FromBytes(Buffer.alloc(0)), null);
  t.end();
});
