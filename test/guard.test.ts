import {
  compileGuard,
  denyRangeLabel,
  describeBlock,
  GUARD_NOT_IP_LABEL,
  GUARD_SELF_LABEL,
  type NetworkInterfaces,
} from '../src/policy/guard';
import type { NetworkPolicy } from '../src/policy/types';

// Pure tests: the guard never connects anywhere, so no address here is ever dialled.

const NO_POLICY: NetworkPolicy = { allowRanges: [], denyRanges: [], parentRanges: [] };
const NO_INTERFACES: NetworkInterfaces = {};

interface Case {
  name: string;
  address: string;
  /** Expected blocked range, or null when the address is allowed. */
  range: string | null;
  label?: string;
}

const BUILTIN_CASES: Case[] = [
  { name: 'public IPv4', address: '93.184.216.34', range: null },
  { name: 'public IPv4 next to 172.16/12', address: '172.32.0.1', range: null },
  { name: 'public IPv6', address: '2606:4700:4700::1111', range: null },
  { name: 'AS112 anycast (global)', address: '192.31.196.1', range: null },
  { name: 'loopback', address: '127.0.0.1', range: '127.0.0.0/8', label: 'loopback' },
  { name: '10/8', address: '10.0.0.5', range: '10.0.0.0/8', label: 'private' },
  { name: '172.16/12', address: '172.16.0.1', range: '172.16.0.0/12', label: 'private' },
  { name: '172.31 edge of 172.16/12', address: '172.31.255.255', range: '172.16.0.0/12', label: 'private' },
  { name: '192.168/16', address: '192.168.1.1', range: '192.168.0.0/16', label: 'private' },
  { name: 'CGNAT', address: '100.64.0.1', range: '100.64.0.0/10', label: 'shared address space (CGNAT)' },
  { name: 'cloud metadata', address: '169.254.169.254', range: '169.254.0.0/16', label: 'link-local' },
  { name: '0.0.0.0', address: '0.0.0.0', range: '0.0.0.0/8', label: 'this network' },
  { name: 'multicast', address: '224.0.0.1', range: '224.0.0.0/4', label: 'multicast' },
  { name: 'reserved', address: '240.0.0.1', range: '240.0.0.0/4', label: 'reserved' },
  { name: 'limited broadcast', address: '255.255.255.255', range: '255.255.255.255/32', label: 'limited broadcast' },
  { name: 'benchmarking', address: '198.18.0.1', range: '198.18.0.0/15', label: 'benchmarking' },
  { name: 'TEST-NET-1', address: '192.0.2.1', range: '192.0.2.0/24', label: 'documentation' },
  { name: 'TEST-NET-3', address: '203.0.113.5', range: '203.0.113.0/24', label: 'documentation' },
  { name: 'IETF protocol assignments', address: '192.0.0.8', range: '192.0.0.0/24' },
  { name: '6to4 relay anycast', address: '192.88.99.1', range: '192.88.99.0/24' },
  { name: 'IPv6 loopback', address: '::1', range: '::1/128', label: 'loopback' },
  { name: 'IPv6 unspecified', address: '::', range: '::/128', label: 'unspecified' },
  // glibc prints ::/96 answers dotted; ipaddr.js alone would misread this as ::ffff:8.8.8.8.
  { name: 'IPv4-compatible (deprecated), dotted', address: '::8.8.8.8', range: '::/96' },
  { name: 'IPv4-compatible (deprecated), hex', address: '::808:808', range: '::/96' },
  { name: 'mapped with a zone-free dotted tail', address: '0:0:0:0:0:ffff:10.0.0.1', range: '10.0.0.0/8' },
  { name: 'IPv6 link-local', address: 'fe80::1', range: 'fe80::/10', label: 'link-local' },
  { name: 'IPv6 link-local with zone id', address: 'fe80::1%eth0', range: 'fe80::/10' },
  { name: 'ULA', address: 'fc00::1', range: 'fc00::/7', label: 'unique local' },
  { name: 'AWS IPv6 metadata', address: 'fd00:ec2::254', range: 'fc00::/7', label: 'unique local' },
  { name: 'site-local', address: 'fec0::1', range: 'fec0::/10' },
  { name: 'IPv6 multicast', address: 'ff02::1', range: 'ff00::/8', label: 'multicast' },
  { name: 'IPv6 documentation', address: '2001:db8::1', range: '2001:db8::/32', label: 'documentation' },
  { name: 'IPv6 documentation 3fff::/20', address: '3fff::1', range: '3fff::/20' },
  { name: 'discard-only', address: '100::1', range: '100::/64' },
  { name: 'ORCHIDv2', address: '2001:20::1', range: '2001:20::/28' },
  { name: 'outside 2000::/3', address: '4000::1', range: '4000::/3' },
  { name: 'SIIT IPv4-translated, outside 2000::/3', address: '::ffff:0:a9fe:a9fe', range: '::/3' },
  { name: 'mapped loopback', address: '::ffff:127.0.0.1', range: '127.0.0.0/8', label: 'loopback' },
  { name: 'mapped metadata', address: '::ffff:169.254.169.254', range: '169.254.0.0/16', label: 'link-local' },
  { name: 'mapped metadata, hex spelling', address: '::ffff:a9fe:a9fe', range: '169.254.0.0/16' },
  { name: 'mapped public', address: '::ffff:8.8.8.8', range: null },
  {
    name: 'NAT64 of metadata',
    address: '64:ff9b::a9fe:a9fe',
    range: '169.254.0.0/16',
    label: 'link-local, embedded in NAT64 64:ff9b::/96',
  },
  { name: 'NAT64 of public', address: '64:ff9b::808:808', range: null },
  { name: 'local-use NAT64, blocked whole', address: '64:ff9b:1::808:808', range: '64:ff9b:1::/48' },
  {
    name: '6to4 of metadata',
    address: '2002:a9fe:a9fe::',
    range: '169.254.0.0/16',
    label: 'link-local, embedded in 6to4 2002::/16',
  },
  { name: '6to4 of 10/8', address: '2002:0a00:0001::1', range: '10.0.0.0/8' },
  { name: '6to4 of public: allowed like the IPv4 itself', address: '2002:0808:0808::', range: null },
  // Teredo 2001:0:4136:e378:8000:63bf:3fff:fdd2 (RFC 4380 §4 example) hides 192.0.2.45.
  { name: 'Teredo, blocked whole', address: '2001:0:4136:e378:8000:63bf:3fff:fdd2', range: '2001::/32', label: 'Teredo' },
  { name: 'Teredo with public client', address: '2001:0:4136:e378:8000:63bf:f7f7:f7f7', range: '2001::/32' },
  { name: 'not an IP address', address: 'example.com', range: 'example.com', label: GUARD_NOT_IP_LABEL },
  { name: 'legacy IPv4 spelling is not an address here', address: '127.1', range: '127.1', label: GUARD_NOT_IP_LABEL },
];

describe('built-in blocked ranges', () => {
  const guard = compileGuard(NO_POLICY, [], NO_INTERFACES);

  test.each(BUILTIN_CASES)('$name: $address', ({ address, range, label }) => {
    const block = guard.check(address, 443);
    if (range === null) {
      expect(block).toBeNull();
      return;
    }
    expect(block).toMatchObject({ address, range });
    if (label !== undefined) expect(block?.label).toBe(label);
  });

  test('the reason phrase names address, range and label', () => {
    const block = guard.check('169.254.169.254', 80);
    expect(block).toEqual({ address: '169.254.169.254', range: '169.254.0.0/16', label: 'link-local' });
    expect(describeBlock(block!)).toBe('destination 169.254.169.254 is in blocked range 169.254.0.0/16 (link-local)');
  });
});

describe('policy ranges', () => {
  const network: NetworkPolicy = {
    allowRanges: [
      { cidr: '127.0.0.0/8', source: 'net.yaml:3' },
      { cidr: '10.0.0.0/8', source: 'net.yaml:3' },
    ],
    denyRanges: [
      { cidr: '10.1.0.0/16', source: 'net.yaml:4' },
      { cidr: '8.8.8.0/24', source: 'net.yaml:5' },
    ],
    parentRanges: [],
  };
  const guard = compileGuard(network, [], NO_INTERFACES);

  const cases: Case[] = [
    { name: 'allow_ranges exempts loopback', address: '127.0.0.1', range: null },
    { name: 'allow_ranges exempts mapped loopback', address: '::ffff:127.0.0.1', range: null },
    { name: 'allow_ranges exempts NAT64 of an allowed IPv4', address: '64:ff9b::a00:1', range: null },
    { name: 'allow_ranges leaves other built-ins alone', address: '192.168.0.1', range: '192.168.0.0/16' },
    { name: 'deny_ranges wins over allow_ranges', address: '10.1.2.3', range: '10.1.0.0/16', label: denyRangeLabel('net.yaml:4') },
    { name: 'deny_ranges blocks public space', address: '8.8.8.8', range: '8.8.8.0/24', label: 'deny_ranges (net.yaml:5)' },
    { name: 'deny_ranges applies to the mapped form', address: '::ffff:8.8.8.8', range: '8.8.8.0/24' },
    { name: 'deny_ranges applies to the 6to4 form', address: '2002:0808:0808::1', range: '8.8.8.0/24' },
    { name: 'deny_ranges applies to the NAT64 form', address: '64:ff9b::808:808', range: '8.8.8.0/24' },
    { name: 'public outside deny_ranges', address: '8.8.4.4', range: null },
  ];

  test.each(cases)('$name: $address', ({ address, range, label }) => {
    const block = guard.check(address, 443);
    if (range === null) expect(block).toBeNull();
    else expect(block).toMatchObject({ address, range, ...(label === undefined ? {} : { label }) });
  });

  test('an IPv6 deny range blocks IPv6 only', () => {
    const v6 = compileGuard({ allowRanges: [], denyRanges: [{ cidr: '2606:4700::/32', source: 'a.yaml:1' }], parentRanges: [] }, [], NO_INTERFACES);
    expect(v6.check('2606:4700:4700::1111', 443)?.range).toBe('2606:4700::/32');
    expect(v6.check('1.1.1.1', 443)).toBeNull();
  });

  test('an invalid range fails compilation loudly', () => {
    expect(() => compileGuard({ allowRanges: [{ cidr: '10.0.0.0/33', source: 'x.yaml:1' }], denyRanges: [], parentRanges: [] }, [], NO_INTERFACES)).toThrow(
      /x\.yaml:1/,
    );
  });
});

describe("the proxy's own listeners", () => {
  const allowLoopback: NetworkPolicy = { allowRanges: [{ cidr: '127.0.0.0/8', source: 't.yaml:1' }], denyRanges: [], parentRanges: [] };

  test('a self address is blocked on its port even when allow_ranges covers it', () => {
    const guard = compileGuard(allowLoopback, [{ host: '127.0.0.1', port: 3128 }], NO_INTERFACES);
    expect(guard.check('127.0.0.1', 3128)).toEqual({ address: '127.0.0.1', range: '127.0.0.1/32', label: GUARD_SELF_LABEL });
    expect(guard.check('::ffff:127.0.0.1', 3128)?.label).toBe(GUARD_SELF_LABEL);
    expect(guard.check('127.0.0.1', 8080)).toBeNull();
    // On Linux 0.0.0.0 as a destination is this host.
    expect(compileGuard({ allowRanges: [{ cidr: '0.0.0.0/8', source: 't.yaml:1' }], denyRanges: [], parentRanges: [] }, [{ host: '127.0.0.1', port: 3128 }], NO_INTERFACES).check('0.0.0.0', 3128)?.label).toBe(GUARD_SELF_LABEL);
  });

  test('self applies to the IPv4 inside an allowed NAT64 form', () => {
    const guard = compileGuard(allowLoopback, [{ host: '127.0.0.1', port: 3129 }], NO_INTERFACES);
    expect(guard.check('64:ff9b::7f00:1', 3129)?.label).toBe(GUARD_SELF_LABEL);
  });

  describe('a wildcard-bound listener blocks its port on every local address', () => {
    const interfaces: NetworkInterfaces = {
      lo: [{ address: '127.0.0.1' }, { address: '::1' }],
      eth0: [{ address: '93.184.216.34' }, { address: '2606:4700:4700::1111' }, { address: 'fe80::1%eth0' }],
    };
    const everything: NetworkPolicy = {
      allowRanges: [
        { cidr: '127.0.0.0/8', source: 't.yaml:1' },
        { cidr: '::1/128', source: 't.yaml:1' },
        { cidr: 'fe80::/10', source: 't.yaml:1' },
      ],
      denyRanges: [],
      parentRanges: [],
    };

    test.each([
      { host: '0.0.0.0', name: 'IPv4 wildcard' },
      { host: '::', name: 'IPv6 wildcard' },
      { host: 'localhost', name: 'a name, failing closed' },
    ])('$name ($host)', ({ host }) => {
      const guard = compileGuard(everything, [{ host, port: 3128 }], interfaces);
      for (const address of ['127.0.0.1', '127.0.0.2', '::1', '93.184.216.34', '2606:4700:4700::1111', 'fe80::1']) {
        expect(guard.check(address, 3128)?.label).toBe(GUARD_SELF_LABEL);
        expect(guard.check(address, 443)).toBeNull();
      }
      expect(guard.check('93.184.216.35', 3128)).toBeNull();
    });
  });

  test('proxy and admin ports are both blocked', () => {
    const guard = compileGuard(allowLoopback, [{ host: '127.0.0.1', port: 3128 }, { host: '127.0.0.1', port: 3129 }], NO_INTERFACES);
    expect(guard.check('127.0.0.1', 3128)).not.toBeNull();
    expect(guard.check('127.0.0.1', 3129)).not.toBeNull();
    expect(guard.check('127.0.0.1', 3130)).toBeNull();
  });

  test('the interface list defaults to os.networkInterfaces()', () => {
    const guard = compileGuard(allowLoopback, [{ host: '0.0.0.0', port: 3128 }]);
    expect(guard.check('127.0.0.1', 3128)?.label).toBe(GUARD_SELF_LABEL);
  });
});

describe('parent_ranges', () => {
  const network: NetworkPolicy = {
    allowRanges: [{ cidr: '192.168.0.0/16', source: 'net.yaml:3' }],
    denyRanges: [{ cidr: '10.1.2.128/25', source: 'net.yaml:4' }],
    parentRanges: [{ cidr: '10.1.2.0/24', source: 'net.yaml:5' }],
  };
  const destination = compileGuard(network, [{ host: '10.1.2.3', port: 3128 }], NO_INTERFACES);
  const parent = compileGuard(network, [{ host: '10.1.2.3', port: 3128 }], NO_INTERFACES, 'parent');

  test.each([
    { name: 'the parent address', address: '10.1.2.3', port: 8080, asDestination: '10.0.0.0/8', asParent: null },
    { name: 'a neighbour in parent_ranges', address: '10.1.2.4', port: 22, asDestination: '10.0.0.0/8', asParent: null },
    { name: 'the parent address, IPv4-mapped', address: '::ffff:10.1.2.3', port: 8080, asDestination: '10.0.0.0/8', asParent: null },
    { name: 'allow_ranges: exempt for both', address: '192.168.1.1', port: 8080, asDestination: null, asParent: null },
    { name: 'outside every list', address: '10.9.9.9', port: 8080, asDestination: '10.0.0.0/8', asParent: '10.0.0.0/8' },
    { name: 'deny_ranges win for a parent too', address: '10.1.2.200', port: 8080, asDestination: '10.1.2.128/25', asParent: '10.1.2.128/25' },
    { name: "the proxy's own listener wins for a parent too", address: '10.1.2.3', port: 3128, asDestination: '10.1.2.3/32', asParent: '10.1.2.3/32' },
  ])('$name', ({ address, port, asDestination, asParent }) => {
    expect(destination.check(address, port)?.range ?? null).toBe(asDestination);
    expect(parent.check(address, port)?.range ?? null).toBe(asParent);
  });
});
