import { decide } from '../../src/policy/decide';
import { defaultReason, matchedRuleReason, DEFAULT_RULE } from '../../src/policy/reasons';
import { facts, fixturePolicy, type RequestSketch } from './helpers';

/** One named case: a request against a fixture folder and the rule that must decide it. */
interface Case extends RequestSketch {
  name: string;
  rule: string;
  action: 'allow' | 'deny';
  wouldDeny?: boolean;
}

function runTable(fixture: string, cases: readonly Case[]): void {
  const policy = fixturePolicy(fixture);
  test.each(cases)('$name', (c) => {
    const decision = decide(policy, facts(c));
    expect({ rule: decision.rule, action: decision.action, wouldDeny: decision.wouldDeny }).toEqual({
      rule: c.rule,
      action: c.action,
      wouldDeny: c.wouldDeny ?? false,
    });
  });
}

const DEF = DEFAULT_RULE;

describe('host patterns (fixture: matching)', () => {
  runTable('matching', [
    { name: '* matches one label', target: 'a.one.example:443', rule: 'one-label', action: 'allow' },
    { name: '* does not match the bare domain', target: 'one.example:443', rule: DEF, action: 'deny' },
    { name: '* does not match two labels', target: 'a.b.one.example:443', rule: DEF, action: 'deny' },
    { name: '** matches no label', target: 'many.example:443', rule: 'any-labels', action: 'allow' },
    { name: '** matches one label', target: 'a.many.example:443', rule: 'any-labels', action: 'allow' },
    { name: '** matches several labels', target: 'a.b.c.many.example:443', rule: 'any-labels', action: 'allow' },
    { name: '** needs the label boundary', target: 'evilmany.example:443', rule: DEF, action: 'deny' },
    { name: 'suffix lookalike is not matched', target: 'many.example.evil.com:443', rule: DEF, action: 'deny' },
    { name: 'pattern upper case and trailing dot', target: 'exact.example:443', rule: 'exact-upper-dot', action: 'allow' },
    { name: 'target upper case', target: 'EXACT.Example:443', rule: 'exact-upper-dot', action: 'allow' },
    { name: 'target trailing dot', target: 'exact.example.:443', rule: 'exact-upper-dot', action: 'allow' },
    { name: 'IDN target in Unicode', target: 'bücher.example:443', rule: 'idn', action: 'allow' },
    { name: 'IDN target in punycode', target: 'xn--bcher-kva.example:443', rule: 'idn', action: 'allow' },
    { name: 'IDN upper-case Unicode', target: 'BÜCHER.example:443', rule: 'idn', action: 'allow' },
  ]);
});

describe('IP and CIDR entries (fixture: matching)', () => {
  runTable('matching', [
    { name: 'bare IPv4 entry', target: '203.0.113.7:443', rule: 'ipv4-entries', action: 'allow' },
    { name: 'next IPv4 address', target: '203.0.113.8:443', rule: DEF, action: 'deny' },
    { name: 'IPv4 CIDR entry', target: '198.51.100.200:443', rule: 'ipv4-entries', action: 'allow' },
    { name: 'IPv6 CIDR entry', target: '[2001:db8:1:ffff::1]:443', rule: 'ipv6-entries', action: 'allow' },
    { name: 'outside the IPv6 CIDR', target: '[2001:db8:3::1]:443', rule: DEF, action: 'deny' },
    { name: 'bare IPv6 entry', target: '[2001:db8:2::5]:443', rule: 'ipv6-entries', action: 'allow' },
    { name: 'IPv4-mapped IPv6 compares as IPv4', target: '[::ffff:203.0.113.7]:443', rule: 'ipv4-entries', action: 'allow' },
    { name: 'legacy IPv4 entry canonicalised', target: '127.0.0.1:443', rule: 'legacy-ipv4', action: 'allow' },
    { name: 'name pattern never matches an IP', target: '10.1.2.3:4444', rule: DEF, action: 'deny' },
    { name: 'same labels as a name do match', target: 'a.b.c.d:4444', rule: 'four-labels', action: 'allow' },
    { name: 'IP entry never matches a name', target: 'ip.203.0.113.7.example:443', rule: DEF, action: 'deny' },
  ]);
});

describe('ports, methods, paths (fixture: matching)', () => {
  runTable('matching', [
    { name: 'default ports: 443', target: 'a.one.example:443', rule: 'one-label', action: 'allow' },
    { name: 'default ports: 80', target: 'http://a.one.example/x', rule: 'one-label', action: 'allow' },
    { name: 'default ports exclude 8443', target: 'a.one.example:8443', rule: DEF, action: 'deny' },
    { name: 'ports: any', target: 'anyport.example:1', rule: 'ports-any', action: 'allow' },
    { name: 'port range low end', target: 'range.example:8000', rule: 'ports-range', action: 'allow' },
    { name: 'port range high end', target: 'range.example:8999', rule: 'ports-range', action: 'allow' },
    { name: 'port as string', target: 'range.example:9443', rule: 'ports-range', action: 'allow' },
    { name: 'outside port range', target: 'range.example:9000', rule: DEF, action: 'deny' },
    { name: 'range replaces the defaults', target: 'range.example:443', rule: DEF, action: 'deny' },
    { name: 'method listed', target: 'http://deb.example/dists/x', method: 'GET', rule: 'apt-methods', action: 'allow' },
    { name: 'method listed in other case', target: 'http://deb.example/x', method: 'head', rule: 'apt-methods', action: 'allow' },
    { name: 'method not listed', target: 'http://deb.example/x', method: 'POST', rule: DEF, action: 'deny' },
    { name: 'methods never match CONNECT', target: 'deb.example:80', rule: DEF, action: 'deny' },
    { name: 'path under the glob', target: 'http://api.example/repos/a/b', rule: 'api-paths', action: 'allow' },
    { name: 'path outside the glob', target: 'http://api.example/admin', rule: DEF, action: 'deny' },
    { name: 'query string is ignored', target: 'http://api.example/repos/a?x=/admin', rule: 'api-paths', action: 'allow' },
    { name: 'dot segments are resolved', target: 'http://api.example/repos/../admin', rule: DEF, action: 'deny' },
    { name: 'encoded dot segments are resolved', target: 'http://api.example/repos/%2e%2e/admin', rule: DEF, action: 'deny' },
    { name: 'encoded unreserved chars decoded', target: 'http://api.example/rep%6Fs/a', rule: 'api-paths', action: 'allow' },
    { name: 'paths never match CONNECT', target: 'api.example:443', rule: DEF, action: 'deny' },
  ]);
});

describe('clients and order (fixture: matching)', () => {
  runTable('matching', [
    { name: 'first match wins across files', target: 'pastebin.com:443', rule: 'deny-paste', action: 'deny' },
    { name: 'client group by IPv4 source', target: 'ci.example:443', sourceIp: '10.0.9.4', rule: 'ci-only', action: 'allow' },
    { name: 'client group by IPv6 source', target: 'ci.example:443', sourceIp: 'fd00:8::42', rule: 'ci-only', action: 'allow' },
    { name: 'IPv4-mapped source', target: 'ci.example:443', sourceIp: '::ffff:10.0.8.1', rule: 'ci-only', action: 'allow' },
    { name: 'source outside the group', target: 'ci.example:443', sourceIp: '10.0.12.1', rule: DEF, action: 'deny' },
    { name: 'one of several groups', target: 'shared.example:443', sourceIp: '192.168.1.9', rule: 'office-or-ci', action: 'allow' },
    { name: 'none of the groups', target: 'shared.example:443', sourceIp: '172.16.0.1', rule: DEF, action: 'deny' },
  ]);
});

describe('defaults and report mode', () => {
  describe('default allow', () => {
    runTable('default-allow', [
      { name: 'unmatched host allowed', target: 'example.org:443', rule: DEF, action: 'allow' },
      { name: 'deny rule still denies', target: 'pastebin.com:443', rule: 'deny-paste', action: 'deny' },
    ]);
  });
  describe('global report mode', () => {
    runTable('report-global', [
      { name: 'deny rule reported', target: 'pastebin.com:443', rule: 'deny-paste', action: 'allow', wouldDeny: true },
      { name: 'rule mode enforce wins', target: 'file.io:443', rule: 'deny-enforced', action: 'deny' },
      { name: 'allow rule unaffected', target: 'example.com:443', rule: 'allow-example', action: 'allow' },
      { name: 'default deny reported', target: 'example.org:443', rule: DEF, action: 'allow', wouldDeny: true },
    ]);
  });
  describe('per-rule report mode', () => {
    runTable('report-rule', [
      { name: 'report rule lets through', target: 'x.trial.example:443', rule: 'trial-deny', action: 'allow', wouldDeny: true },
      { name: 'other deny enforced', target: 'pastebin.com:443', rule: 'deny-paste', action: 'deny' },
      { name: 'default deny enforced', target: 'example.org:443', rule: DEF, action: 'deny' },
    ]);
  });
  describe('expires (through the end of the day, UTC)', () => {
    runTable('expires', [
      { name: 'before the day', target: 'temp.example:443', now: '2026-03-30T12:00:00Z', rule: 'temporary', action: 'allow' },
      { name: 'last millisecond of the day', target: 'temp.example:443', now: '2026-03-31T23:59:59.999Z', rule: 'temporary', action: 'allow' },
      { name: 'the next day', target: 'temp.example:443', now: '2026-04-01T00:00:00Z', rule: DEF, action: 'deny' },
    ]);
  });
});

describe('IP literals are never names', () => {
  test('an IP literal mislabelled as a name is still matched as an IP', () => {
    const policy = fixturePolicy('matching');
    const asName = { ...facts({ target: '203.0.113.7:4444' }), hostKind: 'name' as const };
    expect(decide(policy, asName).rule).toBe(DEF);
    expect(decide(policy, { ...asName, port: 443 }).rule).toBe('ipv4-entries');
  });
});

describe('decision fields', () => {
  test('a matched rule names its source and reason', () => {
    const decision = decide(fixturePolicy('matching'), facts({ target: 'ci.example:443', sourceIp: '10.0.8.1' }));
    expect(decision).toEqual({
      action: 'allow',
      rule: 'ci-only',
      ruleSource: '10-rules.yaml:49',
      reason: matchedRuleReason('ci-only', 'allow', false),
      wouldDeny: false,
      clients: ['ci'],
      upstream: null,
      tls: 'any',
      mode: 'enforce',
    });
  });

  test('the default names the settings default: line', () => {
    const decision = decide(fixturePolicy('matching'), facts({ target: 'nowhere.example:443' }));
    expect(decision).toMatchObject({ rule: DEFAULT_RULE, ruleSource: '00-settings.yaml:3', reason: 'no rule matched; default deny' });
  });

  test('without a settings block the default is deny with no source', () => {
    const decision = decide(fixturePolicy('no-settings'), facts({ target: 'nowhere.example:443' }));
    expect(decision).toMatchObject({ action: 'deny', rule: DEFAULT_RULE, ruleSource: null, reason: defaultReason('deny', false) });
  });

  test('a reported denial says so in the reason', () => {
    const decision = decide(fixturePolicy('report-global'), facts({ target: 'pastebin.com:443' }));
    expect(decision.reason).toBe('matched rule "deny-paste" (deny; report mode: let through)');
  });
});
