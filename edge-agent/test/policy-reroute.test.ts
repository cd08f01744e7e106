import t from 'tap';
import { RerouteDecider, policyHash, type SitePolicy } from '../src/index';

const path = (outIf: string) => ({
  sites: ['a', 'd'],
  links: ['l'],
  outIf,
  nextHop4: '172.16.0.2',
  nextHop6: 'fd00::2',
  segments: ['fc00:0:4::d4'],
});
const content = {
  site: 'a',
  hostAddress: '10.1.0.1',
  tunnelSource: 'fc00:0:1::1',
  interfaces: [],
  classes: [{ id: 'voice', priority: 1, match: { dscp: [46] } }],
  defaultClass: 'voice',
  pathProbePortBase: 50000,
  localSids: [],
  routes: [
    {
      class: 'voice',
      dst: 'd',
      dstPrefixes: ['10.4.0.0/24'],
      slot: 8,
      status: 'ok' as const,
      primary: path('ml0'),
      backup: path('ml1'),
    },
    {
      class: 'voice',
      dst: 'e',
      dstPrefixes: ['10.5.0.0/24'],
      slot: 9,
      status: 'ok' as const,
      primary: path('ml0'),
      backup: null,
    },
  ],
};
const policy: SitePolicy = { ...content, version: 1, hash: policyHash(content) };

t.test('three misses on the primary switch to the backup, once', (t) => {
  const d = new RerouteDecider();
  d.setPolicy(policy);
  t.equal(d.observe(8, 'primary', false), null);
  t.equal(d.observe(8, 'primary', true), null, 'a success resets the count');
  t.equal(d.observe(8, 'primary', false), null);
  t.equal(d.observe(8, 'primary', false), null);
  t.match(d.observe(8, 'primary', false), { action: 'activate-backup', routeKey: 'voice/d', slot: 8 });
  t.equal(d.observe(8, 'primary', false), null, 'no repeat');
  t.equal(d.active(8), 'backup');
  for (let i = 0; i < 20; i++) t.equal(d.observe(8, 'primary', true), null, 'no revert by default');
  t.end();
});

t.test('no backup, or backup down: stay', (t) => {
  const d = new RerouteDecider({ downAfterMisses: 2 });
  d.setPolicy(policy);
  for (let i = 0; i < 5; i++) t.equal(d.observe(9, 'primary', false), null, 'route without backup');
  d.observe(8, 'backup', false);
  d.observe(8, 'backup', false);
  for (let i = 0; i < 5; i++) t.equal(d.observe(8, 'primary', false), null, 'backup known down');
  t.equal(d.observe(99, 'primary', false), null, 'unknown slot ignored');
  t.end();
});

t.test('revert after the primary is up again; backup dying moves back', (t) => {
  const d = new RerouteDecider({ downAfterMisses: 1, upAfterOks: 3, revert: true });
  d.setPolicy(policy);
  t.match(d.observe(8, 'primary', false), { action: 'activate-backup' });
  t.equal(d.observe(8, 'primary', true), null);
  t.equal(d.observe(8, 'primary', true), null);
  t.match(d.observe(8, 'primary', true), { action: 'activate-primary' });
  const d2 = new RerouteDecider({ downAfterMisses: 1, upAfterOks: 1 });
  d2.setPolicy(policy);
  d2.observe(8, 'primary', false);
  d2.observe(8, 'primary', true);
  t.match(d2.observe(8, 'backup', false), { action: 'activate-primary', reason: /backup path down/ });
  t.end();
});

t.test('a new policy keeps unchanged routes, resets changed ones', (t) => {
  const d = new RerouteDecider({ downAfterMisses: 1 });
  d.setPolicy(policy);
  d.observe(8, 'primary', false);
  d.setPolicy(policy);
  t.equal(d.active(8), 'backup', 'unchanged route keeps its state');
  const c2 = { ...content, routes: [{ ...content.routes[0]!, dst: 'x' }] };
  d.setPolicy({ ...c2, version: 2, hash: policyHash(c2) });
  t.equal(d.active(8), 'primary');
  d.setPolicy(policy, new Set([8]));
  t.equal(d.active(8), 'backup', 'a changed route starts from what the driver reports active');
  t.end();
});

t.test('restored() puts a route back on its primary with fresh health', (t) => {
  const d = new RerouteDecider({ downAfterMisses: 2 });
  d.setPolicy(policy);
  d.observe(8, 'primary', false);
  t.match(d.observe(8, 'primary', false), { action: 'activate-backup' });
  d.restored(8);
  t.equal(d.active(8), 'primary');
  t.equal(d.observe(8, 'primary', false), null, 'misses count from zero again');
  t.match(d.observe(8, 'primary', false), { action: 'activate-backup' });
  d.restored(99);
  t.end();
});

t.test('heldOnBackup(): the kernel kept a route on backup, the decider follows with fresh health', (t) => {
  const d = new RerouteDecider({ downAfterMisses: 2 });
  d.setPolicy(policy);
  t.equal(d.active(8), 'primary');
  d.heldOnBackup(8);
  t.equal(d.active(8), 'backup');
  t.equal(d.observe(8, 'primary', false), null, 'primary losses keep it on backup');
  t.equal(d.observe(8, 'backup', false), null);
  t.match(
    d.observe(8, 'backup', false),
    { action: 'activate-primary', reason: 'backup path down, primary up' },
    'its backup dying moves it back (the primary is not known down)',
  );
  d.heldOnBackup(9);
  t.equal(d.active(9), 'primary', 'a route without a backup cannot be on it');
  d.heldOnBackup(99);
  t.end();
});

t.test('a link alarm moves a route off a dead primary at once, and not onto a dead backup', (t) => {
  const d = new RerouteDecider();
  d.setPolicy(policy);
  t.match(d.linkDown(8, true, false, 'link l down (alarm from d)'), {
    action: 'activate-backup',
    routeKey: 'voice/d',
    reason: 'link l down (alarm from d)',
  });
  t.equal(d.active(8), 'backup');
  t.equal(d.linkDown(8, true, false, 'again'), null, 'a repeated alarm changes nothing');
  t.equal(d.linkDown(9, true, false, 'no backup'), null, 'no backup: the route stays');

  const both = new RerouteDecider();
  both.setPolicy(policy);
  t.equal(both.linkDown(8, true, true, 'shared link'), null, 'the backup uses the link too: stay');
  t.equal(both.active(8), 'primary');

  const onBackup = new RerouteDecider();
  onBackup.setPolicy(policy, new Set([8]));
  t.match(onBackup.linkDown(8, false, true, 'backup link down'), { action: 'activate-primary', slot: 8 });
  t.end();
});
