import t from 'tap';
import { checkNetworkState } from '../src/state-loader';
import { jsonErrorOffset } from '../src/json-position';
import { loadTopology } from '../src/loader';
import { REFERENCE_TOPOLOGY_PATH } from '../src/reference-topology';

const topo = loadTopology(REFERENCE_TOPOLOGY_PATH);

t.test('a valid state keeps only the known fields of known links', (t) => {
  const r = checkNetworkState(
    JSON.stringify({
      generatedAt: '2026-11-26T06:00:00Z',
      links: {
        'bj-a.sh-a.leased': { up: false, note: 'cut' },
        'bj-a.bj-b.leased': { utilPct: 97, latencyMs: 2 },
      },
    }),
    'state.json',
    topo,
  );
  t.same(r.problems, []);
  t.same(r.state, {
    links: { 'bj-a.sh-a.leased': { up: false }, 'bj-a.bj-b.leased': { latencyMs: 2, utilPct: 97 } },
  });
  t.end();
});

t.test('JSON syntax errors carry line and column', (t) => {
  const r = checkNetworkState('{"links": {\n  "bj-a.bj-b.leased": {"up": true,}\n}}', 's.json', topo);
  t.equal(r.problems.length, 1);
  t.equal(r.problems[0]!.code, 'TOPO_ERR_JSON_SYNTAX');
  t.equal(r.problems[0]!.line, 2);
  t.equal(r.problems[0]!.column, 35);
  t.equal(checkNetworkState('', 's.json').problems[0]!.code, 'TOPO_ERR_JSON_SYNTAX');
  t.end();
});

t.test('shape: not an object, links missing, wrong types and ranges, unknown links', (t) => {
  t.equal(checkNetworkState('[1, 2]', 's.json').problems[0]!.code, 'TOPO_ERR_NOT_MAPPING');
  const missing = checkNetworkState('{"link": {}}', 's.json').problems;
  t.same(
    missing.map((p) => [p.code, p.path]),
    [['TOPO_ERR_REQUIRED', 'links']],
  );
  const text = [
    '{"links": {',
    '  "bj-a.sh-a.leased": {"up": "no", "lossPct": 150},',
    '  "bj-a.sh-a.lesaed": {"up": false},',
    '  "bj-b.sh-b.leased": {"latencyMs": -3, "utilPct": "high"}',
    '}}',
  ].join('\n');
  const ps = checkNetworkState(text, 's.json', topo).problems;
  t.same(
    ps.map((p) => [p.code, p.path, p.line, p.column]),
    [
      ['TOPO_ERR_TYPE', 'links["bj-a.sh-a.leased"].up', 2, 30],
      ['TOPO_ERR_RANGE', 'links["bj-a.sh-a.leased"].lossPct', 2, 47],
      ['TOPO_ERR_UNKNOWN_LINK', 'links["bj-a.sh-a.lesaed"]', 3, 3],
      ['TOPO_ERR_RANGE', 'links["bj-b.sh-b.leased"].latencyMs', 4, 37],
      ['TOPO_ERR_TYPE', 'links["bj-b.sh-b.leased"].utilPct', 4, 52],
    ],
  );
  t.match(ps[2]!.message, "unknown link 'bj-a.sh-a.lesaed', did you mean 'bj-a.sh-a.leased'?");
  t.end();
});

t.test("a link id such as '__proto__' stays a plain key", (t) => {
  const r = checkNetworkState('{"links": {"__proto__": {"up": false}}}', 's.json');
  t.same(Object.keys(r.state!.links), ['__proto__']);
  t.equal(
    checkNetworkState('{"links": {"__proto__": {"up": false}}}', 's.json', topo).problems[0]!.code,
    'TOPO_ERR_UNKNOWN_LINK',
  );
  t.end();
});

t.test('the JSON error scanner agrees with JSON.parse and finds the offending character', (t) => {
  const cases: [string, number][] = [
    ['{}', -1],
    ['{"a":[1,{"b":null}],"c":"\\u00e9"}', -1],
    [' -1.5e+3 ', -1],
    ['{"a":}', 5],
    ['[1,]', 3],
    ['{"a" 1}', 5],
    ['[01]', 2],
    ['"a\\q"', 3],
    ['{"a":1} x', 8],
    ['', 0],
    ['[', 1],
    ['{"a":1,}', 7],
    ['tru', 0],
    ['"\\u12g4"', 2],
    ['[1 2]', 3],
    ['"tab\there"', 4],
    ['['.repeat(100_000), 100_000],
  ];
  for (const [text, offset] of cases) {
    let valid = true;
    try {
      JSON.parse(text);
    } catch {
      valid = false;
    }
    t.equal(jsonErrorOffset(text), offset, JSON.stringify(text.slice(0, 20)));
    t.equal(valid, offset === -1);
  }
  t.end();
});
