import { join } from 'node:path';
import { policyView } from '../../src/admin/policy-view';
import { checkPolicies } from '../../src/policy/check';
import { decide } from '../../src/policy/decide';
import { explainDecision } from '../../src/policy/explain';
import { parseHostEntry } from '../../src/policy/host-match';
import { asciiLookAlike, mixedScripts } from '../../src/policy/idn-warnings';
import { DEFAULT_RULE } from '../../src/policy/reasons';
import { parseAbsoluteTarget, parseConnectTarget } from '../../src/request/target';
import { facts, fixturePolicy, FIXTURES } from './helpers';

/** SPEC §2, §6: host patterns may be written in Unicode; they are compared in punycode. */
describe('Unicode host patterns are converted label by label', () => {
  test.each([
    ['münchen.example', 'xn--mnchen-3ya.example', 'münchen.example'],
    ['MÜNCHEN.example.', 'xn--mnchen-3ya.example', 'münchen.example'],
    ['**.bücher.example', '**.xn--bcher-kva.example', '**.bücher.example'],
    ['*.例え.jp', '*.xn--r8jz45g.jp', '*.例え.jp'],
    ['例え。jp', 'xn--r8jz45g.jp', '例え.jp'],
    ['api-?.bücher.example', 'api-?.xn--bcher-kva.example', 'api-?.bücher.example'],
    ['ｇｉｔｈｕｂ.com', 'github.com', undefined],
    ['xn--mnchen-3ya.example', 'xn--mnchen-3ya.example', undefined],
  ])('%s -> %s', (raw, pattern, written) => {
    const parsed = parseHostEntry(raw);
    expect(parsed).toEqual({ ok: true, entry: written === undefined ? { kind: 'name', pattern } : { kind: 'name', pattern, written } });
  });

  const CANNOT = 'cannot be converted to punycode (IDNA refuses it: a character that is not allowed in names, or a mix of right-to-left and left-to-right letters)';
  test.each([
    ['bü\u200dcher.example', `host pattern "bü\\u{200d}cher.example": label "bü\\u{200d}cher" ${CANNOT}`],
    ['\u05d0a.example', `host pattern "\u05d0a.example": label "\u05d0a" ${CANNOT}`],
    ['\u0301b.example', `host pattern "\u0301b.example": label "\u0301b" ${CANNOT}`],
    ['mü?chen.example', 'host pattern "mü?chen.example": label "mü?chen" mixes a wildcard with non-ASCII letters, which cannot be compared in punycode; make the wildcard a whole label ("*")'],
    ['*ü.example', 'host pattern "*ü.example": label "*ü" mixes a wildcard with non-ASCII letters, which cannot be compared in punycode; make the wildcard a whole label ("*")'],
    ['a.１２７', 'host pattern "a.１２７": label "１２７" reads as a number or address once converted; write it in ASCII'],
    ['ü!.example', 'host pattern "ü!.example": only letters, digits, "-", "_" and the wildcards "*", "**" and "?" are allowed'],
    ['ü..example', 'host pattern "ü..example" has an empty label'],
  ])('%s is refused, naming the label', (raw, message) => {
    expect(parseHostEntry(raw)).toEqual({ ok: false, message });
  });

  test('hostPatterns show the pattern as written and the punycode matched', () => {
    const policy = fixturePolicy('idn');
    expect(policy.rules.map((r) => r.hostPatterns)).toEqual([
      ['münchen.example (xn--mnchen-3ya.example)'],
      ['**.bücher.example (**.xn--bcher-kva.example)'],
      ['*.例え.jp (*.xn--r8jz45g.jp)', '例え.jp (xn--r8jz45g.jp)'],
      ['xn--caf-dma.example'],
    ]);
  });

  test('GET /api/policy lists the hosts the same way', () => {
    const policy = fixturePolicy('idn');
    const view = policyView({ policy, lastReload: { ok: true, at: '', version: policy.version, problems: [] } }, new Map(), 0, 0);
    expect(view.rules[0]?.hosts).toEqual(['münchen.example (xn--mnchen-3ya.example)']);
  });
});

describe('requests match Unicode-written rules in punycode (fixture: idn)', () => {
  const policy = fixturePolicy('idn');
  test.each([
    ['xn--mnchen-3ya.example:443', 'munich'],
    ['münchen.example:443', 'munich'],
    ['MÜNCHEN.EXAMPLE.:443', 'munich'],
    ['http://xn--mnchen-3ya.example/', 'munich'],
    ['http://MÜNCHEN.example/path', 'munich'],
    ['xn--bcher-kva.example:443', 'books'],
    ['a.b.BÜCHER.example:443', 'books'],
    ['http://www.xn--bcher-kva.example/', 'books'],
    ['www.例え.jp:443', 'japan'],
    ['http://xn--r8jz45g.jp/', 'japan'],
    ['café.example:443', 'punycode-written'],
    ['http://CAFÉ.example/', 'punycode-written'],
    ['munchen.example:443', DEFAULT_RULE],
    ['xn--mnchen-3ya.example.evil:443', DEFAULT_RULE],
    ['bucher.example:443', DEFAULT_RULE],
    ['a.b.例え.jp:443', DEFAULT_RULE],
  ])('%s -> %s', (target, rule) => {
    expect(decide(policy, facts({ target })).rule).toBe(rule);
  });

  test.each([
    ['CONNECT', () => parseConnectTarget('MÜNCHEN.example:443')],
    ['CONNECT, percent-encoded', () => parseConnectTarget('m%C3%BCnchen.example:443')],
    ['plain HTTP', () => parseAbsoluteTarget('http://MÜNCHEN.example/')],
    ['plain HTTP, percent-encoded', () => parseAbsoluteTarget('http://m%C3%BCnchen.example/')],
  ])('a Unicode %s target reaches the matcher in punycode', (_kind, parse) => {
    const target = parse();
    expect(target.host).toBe('xn--mnchen-3ya.example');
    const decision = decide(policy, { ...facts({ target: 'x.example:443' }), kind: target.kind, host: target.host, hostKind: target.hostKind });
    expect(decision.rule).toBe('munich');
  });

  test('policy test names the pattern both ways when a host is not matched', () => {
    const why = explainDecision(policy, facts({ target: 'other.example:443' })).considered[0]?.why;
    expect(why).toBe('host not matched: "other.example" vs [münchen.example (xn--mnchen-3ya.example)]');
  });
});

describe('mixed-script and look-alike patterns warn (fixture: idn-lookalike)', () => {
  test('policy check passes and prints each warning with FILE:LINE', () => {
    const result = checkPolicies(join(FIXTURES, 'idn-lookalike'));
    expect(result.ok).toBe(true);
    expect(result.lines.slice(0, -1)).toEqual([
      'policy.yaml:7: warning: rule "payments": host pattern "pаypal.com" (xn--pypal-4ve.com): label "pаypal" mixes Latin and Cyrillic letters',
      'policy.yaml:7: warning: rule "payments": host pattern "pаypal.com" (xn--pypal-4ve.com) looks like paypal.com but is another name and does not match it',
      'policy.yaml:8: warning: rule "payments": host pattern "**.ехро.example" (**.xn--e1asft.example) looks like **.expo.example but is another name and does not match it',
      'policy.yaml:11: warning: rule "mixed": host pattern "gοοgle.example" (xn--ggle-0nda.example): label "gοοgle" mixes Latin and Greek letters',
      'policy.yaml:11: warning: rule "mixed": host pattern "gοοgle.example" (xn--ggle-0nda.example) looks like google.example but is another name and does not match it',
      'policy.yaml:11: warning: rule "mixed": host pattern "ѕtripe.例え.jp" (xn--tripe-g2e.xn--r8jz45g.jp): label "ѕtripe" mixes Cyrillic and Latin letters',
      'policy.yaml:11: warning: rule "mixed": host pattern "ѕtripe.例え.jp" (xn--tripe-g2e.xn--r8jz45g.jp): label "ѕtripe" looks like "stripe" but is another label',
      'policy.yaml:11: warning: rule "mixed": host pattern "ıd.example" (xn--d-eka.example) looks like id.example but is another name and does not match it',
    ]);
  });

  test('ordinary Unicode names give no warning', () => {
    const result = checkPolicies(join(FIXTURES, 'idn'));
    expect(result.ok).toBe(true);
    expect(result.lines).toHaveLength(1);
  });

  test('the look-alike does not match the name it looks like', () => {
    const policy = fixturePolicy('idn-lookalike');
    expect(decide(policy, facts({ target: 'xn--pypal-4ve.com:443' })).rule).toBe('payments');
    expect(decide(policy, facts({ target: 'google.example:443' })).rule).toBe(DEFAULT_RULE);
  });

  test.each([
    ['pаypal', ['Latin', 'Cyrillic']],
    ['ѕtripe', ['Cyrillic', 'Latin']],
    ['abcπ', ['Latin', 'Greek']],
    ['aא', ['Latin', 'Hebrew']],
    ['münchen', null],
    ['例え', null],
    ['東京タワー', null],
    ['sony-ソニー', null],
    ['한국', null],
    ['москва-2', null],
    ['é\u0301', null],
  ])('mixedScripts(%s)', (label, scripts) => {
    expect(mixedScripts(label)).toEqual(scripts);
  });

  test.each([
    ['pаypal', 'paypal'],
    ['ехро', 'expo'],
    ['gοοgle', 'google'],
    ['ıd', 'id'],
    ['münchen', null],
    ['москва', null],
    ['paypal', null],
  ])('asciiLookAlike(%s)', (label, ascii) => {
    expect(asciiLookAlike(label)).toBe(ascii);
  });
});
