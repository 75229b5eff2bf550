import { compileHostMatcher, hostMatches, isOverBroad, normalizeHostName, parseHostEntry, viewHost } from '../../src/policy/host-match';
import type { HostKind } from '../../src/request/target-types';

function matches(pattern: string, host: string, kind: HostKind = 'name'): boolean {
  const parsed = parseHostEntry(pattern);
  if (!parsed.ok) throw new Error(parsed.message);
  return hostMatches(compileHostMatcher([parsed.entry]), viewHost(host, kind));
}

describe('name patterns: * is one label, ** is zero or more', () => {
  test.each([
    ['*.example.com', 'a.example.com', true],
    ['*.example.com', 'example.com', false],
    ['*.example.com', 'a.b.example.com', false],
    ['**.example.com', 'example.com', true],
    ['**.example.com', 'a.example.com', true],
    ['**.example.com', 'a.b.example.com', true],
    ['**.example.com', 'badexample.com', false],
    ['**.example.com', 'example.com.evil.net', false],
    ['a.**.com', 'a.com', true],
    ['a.**.com', 'a.b.c.com', true],
    ['api-*.example.com', 'api-eu.example.com', true],
    ['api-*.example.com', 'api.example.com', false],
    ['?.example.com', 'x.example.com', true],
    ['?.example.com', 'xy.example.com', false],
    ['*', 'localhost', true],
    ['*', 'a.b', false],
    ['**', 'a.b.c.d', true],
    ['example.com', 'EXAMPLE.COM.', true],
    ['EXAMPLE.com.', 'example.com', true],
    ['_dmarc.example.com', '_dmarc.example.com', true],
    ['xn--bcher-kva.example', 'bücher.example', true],
    ['**.xn--bcher-kva.example', 'www.bücher.example', true],
    ['*.bücher.example', 'www.xn--bcher-kva.example', true],
    ['*.bücher.example', 'WWW.BÜCHER.EXAMPLE.', true],
    ['*.bücher.example', 'www.bucher.example', false],
    ['münchen.example', 'xn--mnchen-3ya.example', true],
    ['münchen.example', 'MÜNCHEN.example', true],
  ])('%s vs %s -> %s', (pattern, host, expected) => {
    expect(matches(pattern, host)).toBe(expected);
  });
});

describe('IP and CIDR entries only match IP literals', () => {
  test.each([
    ['10.0.0.0/8', '10.255.1.2', 'ipv4', true],
    ['10.0.0.0/8', '11.0.0.1', 'ipv4', false],
    ['10.1.2.3', '10.1.2.3', 'ipv4', true],
    ['2001:db8::/32', '2001:db8:ffff::1', 'ipv6', true],
    ['2001:db8::/32', '2001:db9::1', 'ipv6', false],
    ['10.0.0.0/8', '::ffff:10.0.0.1', 'ipv6', true],
    ['::ffff:10.0.0.0/104', '10.2.3.4', 'ipv4', true],
    ['0.0.0.0/0', 'example.com', 'name', false],
    ['**', '10.0.0.1', 'ipv4', false],
    ['*.*.*.*', '10.0.0.1', 'ipv4', false],
    ['*.*.*.*', '10.0.0.1', 'name', false],
    ['1.2.3.4', '::1.2.3.4', 'ipv6', false],
    ['1.2.3.4', '::ffff:1.2.3.4', 'ipv6', true],
    ['::102:304', '::1.2.3.4', 'ipv6', true],
  ] as const)('%s vs %s (%s) -> %s', (pattern, host, kind, expected) => {
    expect(matches(pattern, host, kind)).toBe(expected);
  });
});

describe('entries are parsed and canonicalised', () => {
  test.each([
    ['2130706433', '127.0.0.1/32'],
    ['0x7f.1', '127.0.0.1/32'],
    ['127.1', '127.0.0.1/32'],
    ['0177.0.0.1', '127.0.0.1/32'],
    ['0x0a000000/8', '10.0.0.0/8'],
    ['2001:DB8:0:0::/64', '2001:db8::/64'],
    ['::ffff:10.0.0.0/104', '10.0.0.0/8'],
    ['::1', '::1/128'],
    ['::1.2.3.4', '::102:304/128'],
    ['::ffff:1.2.3.4', '1.2.3.4/32'],
  ])('%s -> %s', (raw, cidr) => {
    const parsed = parseHostEntry(raw);
    expect(parsed.ok && parsed.entry.kind === 'range' ? parsed.entry.range.cidr : parsed).toBe(cidr);
  });

  test.each([
    ['1.2.3.256', '"1.2.3.256" is not a valid IPv4 address'],
    ['*.1', '"*.1": IP entries take no wildcards; use a CIDR such as "10.0.0.0/8"'],
    ['[::1]', 'write IPv6 addresses without brackets: "::1"'],
    ['fe80::1%eth0', '"fe80::1%eth0": zone identifiers (%...) are not allowed'],
    ['10.0.0.0/8/8', '"10.0.0.0/8/8" has a bad prefix length (0-32)'],
    ['https://github.com/x', 'host "https://github.com/x" is a URL; write the host only: "github.com"'],
    ['a..example', 'host pattern "a..example" has an empty label'],
    ['', 'empty host pattern'],
    ['*.bü?her.example', 'host pattern "*.bü?her.example": label "bü?her" mixes a wildcard with non-ASCII letters, which cannot be compared in punycode; make the wildcard a whole label ("*")'],
    ['!example.com', 'host pattern "!example.com": only letters, digits, "-", "_" and the wildcards "*", "**" and "?" are allowed'],
  ])('%s is refused', (raw, message) => {
    expect(parseHostEntry(raw)).toEqual({ ok: false, message });
  });
});

describe('helpers', () => {
  test.each([
    ['Example.COM.', 'example.com'],
    ['bücher.example', 'xn--bcher-kva.example'],
    ['BÜCHER.example.', 'xn--bcher-kva.example'],
    ['plain.example', 'plain.example'],
  ])('normalizeHostName(%s) = %s', (host, expected) => {
    expect(normalizeHostName(host)).toBe(expected);
  });

  test.each([
    ['**', true],
    ['*', true],
    ['**.com', true],
    ['*.*.*.*', true],
    ['**.example.com', false],
    ['example.com', false],
  ])('isOverBroad(%s) = %s', (pattern, expected) => {
    expect(isOverBroad(pattern)).toBe(expected);
  });
});
