import net from 'node:net';
import os from 'node:os';
import ipaddr from 'ipaddr.js';
import { parseRange } from './ip-range';
import type { NetworkPolicy } from './types';

/**
 * The destination guard (SPEC §2): pure, address -> blocked range or null. It runs after DNS on
 * every address a connection could go to, so the tables are compiled once and check() only
 * walks short arrays of pre-parsed ranges.
 *
 * The built-in tables are our own, taken from RFC 6890 and the IANA special-purpose address
 * registries (iana-ipv4-special-registry, iana-ipv6-special-registry), so an ipaddr.js update
 * cannot silently open a hole. ipaddr.js's range() is consulted only afterwards, and only to
 * block more (see libraryBlock).
 */

/** A listening socket of tollgate itself (proxy or admin); `0.0.0.0` / `::` mean every local address. */
export interface SelfAddress {
  host: string;
  port: number;
}

/** Why an address is refused: the address as given, the range it fell in, and that range's name. */
export interface GuardBlock {
  address: string;
  range: string;
  label: string;
}

export interface Guard {
  /** Null when a connection to address:port may be made. */
  check(address: string, port: number): GuardBlock | null;
}

/** The shape of os.networkInterfaces(), reduced to what the guard reads (tests pass their own). */
export type NetworkInterfaces = Record<string, ReadonlyArray<{ address: string }> | undefined>;

export const GUARD_SELF_LABEL = "the proxy's own listener";
export const GUARD_NOT_IP_LABEL = 'not an IP address';

export function denyRangeLabel(source: string): string {
  return `deny_ranges (${source})`;
}

/** The one reason phrase for a guard refusal, shared by the dialler, `policy test` and tests. */
export function describeBlock(block: GuardBlock): string {
  return `destination ${block.address} is in blocked range ${block.range} (${block.label})`;
}

type Address = ipaddr.IPv4 | ipaddr.IPv6;

interface CompiledRange<A extends Address> {
  net: A;
  bits: number;
  range: string;
  label: string;
}

interface RangeTable {
  v4: CompiledRange<ipaddr.IPv4>[];
  v6: CompiledRange<ipaddr.IPv6>[];
}

// RFC 6890 §2.2.2 + IANA IPv4 special-purpose registry: every range not "Globally Reachable".
// More specific entries come first so the label names the narrowest range.
const BUILTIN_V4: ReadonlyArray<readonly [string, string]> = [
  ['0.0.0.0/8', 'this network'], // RFC 791, RFC 1122 §3.2.1.3; connecting to 0.0.0.0 reaches this host
  ['10.0.0.0/8', 'private'], // RFC 1918
  ['100.64.0.0/10', 'shared address space (CGNAT)'], // RFC 6598
  ['127.0.0.0/8', 'loopback'], // RFC 1122 §3.2.1.3
  ['169.254.0.0/16', 'link-local'], // RFC 3927; cloud metadata lives at 169.254.169.254
  ['172.16.0.0/12', 'private'], // RFC 1918
  // RFC 6890 §2.2.2. Two /32s inside are global anycast (192.0.0.9, .10): blocked anyway, on purpose.
  ['192.0.0.0/24', 'IETF protocol assignments'],
  ['192.0.2.0/24', 'documentation'], // RFC 5737 TEST-NET-1
  ['192.88.99.0/24', '6to4 relay anycast'], // RFC 3068, deprecated by RFC 7526
  ['192.168.0.0/16', 'private'], // RFC 1918
  ['198.18.0.0/15', 'benchmarking'], // RFC 2544
  ['198.51.100.0/24', 'documentation'], // RFC 5737 TEST-NET-2
  ['203.0.113.0/24', 'documentation'], // RFC 5737 TEST-NET-3
  ['224.0.0.0/4', 'multicast'], // RFC 5771
  ['255.255.255.255/32', 'limited broadcast'], // RFC 919, RFC 8190
  ['240.0.0.0/4', 'reserved'], // RFC 1112 §4
];

// RFC 6890 §2.2.3 + IANA IPv6 special-purpose registry. ::ffff:0:0/96 (RFC 4291 §2.5.5.2),
// 64:ff9b::/96 (RFC 6052) and 2002::/16 (RFC 3056) are not here: they carry an IPv4 address
// that is checked instead (see embeddedIPv4). Anything outside 2000::/3 is caught afterwards.
const BUILTIN_V6: ReadonlyArray<readonly [string, string]> = [
  ['::/128', 'unspecified'], // RFC 4291 §2.5.2
  ['::1/128', 'loopback'], // RFC 4291 §2.5.3
  ['::/96', 'IPv4-compatible (deprecated)'], // RFC 4291 §2.5.5.1
  // RFC 8215 local-use NAT64: the operator picks the embedding length (RFC 6052 §2.2), so the
  // IPv4 inside cannot be read reliably; IANA marks it not globally reachable. Blocked whole.
  ['64:ff9b:1::/48', 'local-use NAT64'],
  ['100::/64', 'discard-only'], // RFC 6666
  // RFC 4380 Teredo: the client IPv4 is obfuscated and the mapping lives in a NAT we cannot see;
  // Teredo is obsolete in practice, so it is blocked whole rather than decoded.
  ['2001::/32', 'Teredo'],
  ['2001:2::/48', 'benchmarking'], // RFC 5180
  ['2001:10::/28', 'ORCHID (deprecated)'], // RFC 4843
  ['2001:20::/28', 'ORCHIDv2'], // RFC 7343
  ['2001::/23', 'IETF protocol assignments'], // RFC 2928, RFC 6890 §2.2.3
  ['2001:db8::/32', 'documentation'], // RFC 3849
  ['3fff::/20', 'documentation'], // RFC 9637
  ['5f00::/16', 'SRv6 SIDs'], // RFC 9602
  ['fc00::/7', 'unique local'], // RFC 4193 (AWS IPv6 metadata fd00:ec2::254 is here)
  ['fe80::/10', 'link-local'], // RFC 4291 §2.5.6
  ['fec0::/10', 'site-local (deprecated)'], // RFC 3879
  ['ff00::/8', 'multicast'], // RFC 4291 §2.7
];

// RFC 4291 §2.4 / IANA IPv6 address space: only 2000::/3 is allocated global unicast.
const GLOBAL_UNICAST_V6 = ipaddr.IPv6.parseCIDR('2000::/3');

// ipaddr.js range() names that denote globally reachable space. Any other name (including one a
// future version adds) blocks, so the library can only make the guard stricter.
const LIBRARY_GLOBAL_V4 = new Set(['unicast', 'as112', 'amt']);
const LIBRARY_GLOBAL_V6 = new Set(['unicast', 'as112v6']);

const LOOPBACK_AND_UNSPECIFIED = ['127.0.0.0/8', '::1/128', '0.0.0.0/32', '::/128'];

function emptyTable(): RangeTable {
  return { v4: [], v6: [] };
}

/**
 * Ranges are read by the same parser as policy validation (ip-range.ts), so the guard sees a
 * policy CIDR exactly as `policy check` accepted it (legacy IPv4 spellings, mapped IPv6 unmapped).
 */
function addRange(table: RangeTable, cidr: string, label: string): void {
  const parsed = parseRange(cidr);
  if (!parsed.ok) throw new Error(`guard: ${parsed.message} (${label})`);
  const { addr, bits } = parsed.range;
  if (addr instanceof ipaddr.IPv4) table.v4.push({ net: addr, bits, range: cidr, label });
  else if (addr instanceof ipaddr.IPv6) table.v6.push({ net: addr, bits, range: cidr, label });
}

function buildTable(entries: ReadonlyArray<readonly [string, string]>): RangeTable {
  const table = emptyTable();
  for (const [cidr, label] of entries) addRange(table, cidr, label);
  return table;
}

function findRange(address: Address, table: RangeTable): CompiledRange<Address> | undefined {
  if (address instanceof ipaddr.IPv4) return table.v4.find((r) => address.match(r.net, r.bits));
  return table.v6.find((r) => address.match(r.net, r.bits));
}

function firstHit(subjects: Address[], table: RangeTable): CompiledRange<Address> | undefined {
  for (const subject of subjects) {
    const hit = findRange(subject, table);
    if (hit) return hit;
  }
  return undefined;
}

const BUILTIN_TABLE = buildTable([...BUILTIN_V4, ...BUILTIN_V6]);

const DOTTED_TAIL = /(\d+)\.(\d+)\.(\d+)\.(\d+)(%.*)?$/;

/**
 * ipaddr.js reads `::a.b.c.d` as `::ffff:a.b.c.d`, but it is the IPv4-compatible ::/96 form
 * (RFC 4291 §2.5.5.1), and glibc's inet_ntop prints such resolver answers exactly that way.
 * Rewriting a dotted tail to two hex groups first keeps the bytes what the kernel would use.
 */
function hexTail(ipv6: string): string {
  return ipv6.replace(DOTTED_TAIL, (_match, a: string, b: string, c: string, d: string, zone = '') => {
    const word = (high: string, low: string): string => ((Number(high) << 8) | Number(low)).toString(16);
    return `${word(a, b)}:${word(c, d)}${zone}`;
  });
}

/** Parses an address as sockets and resolvers spell it; IPv4-mapped IPv6 becomes its IPv4. */
function parseAddress(address: string): Address | null {
  const family = net.isIP(address);
  if (family === 0) return null;
  // net.isIP's IPv4 is plain dotted decimal: no need for ipaddr.js's parser of legacy spellings.
  const parsed = family === 4 ? new ipaddr.IPv4(address.split('.').map(Number)) : ipaddr.IPv6.parse(hexTail(address));
  if (parsed instanceof ipaddr.IPv6 && parsed.isIPv4MappedAddress()) return parsed.toIPv4Address();
  return parsed;
}

function ipv4FromWords(high: number, low: number): ipaddr.IPv4 {
  return new ipaddr.IPv4([high >> 8, high & 0xff, low >> 8, low & 0xff]);
}

const NAT64_WKP = ipaddr.IPv6.parseCIDR('64:ff9b::/96');
const SIX_TO_FOUR = ipaddr.IPv6.parseCIDR('2002::/16');

/**
 * IPv6 forms that deliver to an IPv4 address: the guard judges that IPv4 instead.
 * RFC 6052 §2.2: the well-known prefix is a /96, the IPv4 is the last 32 bits.
 * RFC 3056 §2: 6to4 carries the IPv4 in bits 16-47.
 */
function embeddedIPv4(address: ipaddr.IPv6): { ipv4: ipaddr.IPv4; form: string } | null {
  const p = address.parts;
  if (address.match(NAT64_WKP)) return { ipv4: ipv4FromWords(p[6], p[7]), form: 'NAT64 64:ff9b::/96' };
  if (address.match(SIX_TO_FOUR)) return { ipv4: ipv4FromWords(p[1], p[2]), form: '6to4 2002::/16' };
  return null;
}

function slash3Of(address: ipaddr.IPv6): string {
  const network = new ipaddr.IPv6([address.parts[0] & 0xe000, 0, 0, 0, 0, 0, 0, 0]);
  return `${network.toString()}/3`;
}

/** Defence in depth: whatever ipaddr.js calls special and our table let through. */
function libraryBlock(address: Address): { range: string; label: string } | null {
  const name = address.range();
  const global = address instanceof ipaddr.IPv4 ? LIBRARY_GLOBAL_V4 : LIBRARY_GLOBAL_V6;
  if (global.has(name)) return null;
  return { range: hostRoute(address), label: `special-purpose (ipaddr.js: ${name})` };
}

function builtinRange(address: Address): { range: string; label: string } | null {
  const hit = findRange(address, BUILTIN_TABLE);
  if (hit) return hit;
  if (address instanceof ipaddr.IPv6 && !address.match(GLOBAL_UNICAST_V6)) {
    return { range: slash3Of(address), label: 'not global unicast (outside 2000::/3)' };
  }
  return libraryBlock(address);
}

function selfTables(self: SelfAddress[], interfaces: NetworkInterfaces): Map<number, RangeTable> {
  const byPort = new Map<number, RangeTable>();
  for (const { host, port } of self) {
    const table = byPort.get(port) ?? emptyTable();
    byPort.set(port, table);
    for (const cidr of selfRanges(host, interfaces)) addRange(table, cidr, GUARD_SELF_LABEL);
  }
  return byPort;
}

/**
 * Where a listener bound to `host` can be reached. A wildcard (or a name the pure guard cannot
 * resolve, failing closed) is every local address: loopback plus each interface address.
 * The unspecified addresses are always included: on Linux connecting to 0.0.0.0 or :: reaches
 * this host. An IPv4 wildcard also blocks the IPv6 local addresses on that port (harmless, simpler).
 */
function selfRanges(host: string, interfaces: NetworkInterfaces): string[] {
  const parsed = parseAddress(host);
  if (parsed !== null && parsed.range() !== 'unspecified') {
    return [hostRoute(parsed), '0.0.0.0/32', '::/128'];
  }
  const local = Object.values(interfaces)
    .flatMap((list) => list ?? [])
    .map((info) => parseAddress(info.address))
    .filter((a): a is Address => a !== null)
    .map(hostRoute);
  return [...LOOPBACK_AND_UNSPECIFIED, ...local];
}

/** 'ADDRESS/32' or 'ADDRESS/128', without any IPv6 zone id (fe80::1%eth0). */
function hostRoute(address: Address): string {
  const bare = ipaddr.fromByteArray(address.toByteArray());
  return `${bare.toString()}/${bare instanceof ipaddr.IPv4 ? 32 : 128}`;
}

/**
 * Compiles the guard once per policy load. `interfaces` defaults to os.networkInterfaces() read
 * now: a reload recompiles, so an address added later is covered from the next reload on.
 * A `parent` guard also exempts `parent_ranges`, for tollgate's own connection to a parent only.
 */
export function compileGuard(
  network: NetworkPolicy,
  self: SelfAddress[],
  interfaces: NetworkInterfaces = os.networkInterfaces(),
  scope: 'destination' | 'parent' = 'destination',
): Guard {
  const deny = buildTable(network.denyRanges.map((e) => [e.cidr, denyRangeLabel(e.source)] as const));
  const exempt: Array<readonly [string, string]> = network.allowRanges.map((e) => [e.cidr, `allow_ranges (${e.source})`]);
  if (scope === 'parent') exempt.push(...network.parentRanges.map((e) => [e.cidr, `parent_ranges (${e.source})`] as const));
  const exemptions = buildTable(exempt);
  const selfByPort = selfTables(self, interfaces);
  const block = (address: string, hit: { range: string; label: string }): GuardBlock => ({ address, range: hit.range, label: hit.label });

  return {
    check(address: string, port: number): GuardBlock | null {
      const ip = parseAddress(address);
      if (ip === null) return { address, range: address, label: GUARD_NOT_IP_LABEL };
      const embedded = ip instanceof ipaddr.IPv6 ? embeddedIPv4(ip) : null;
      const subjects: Address[] = embedded ? [ip, embedded.ipv4] : [ip];
      // Order: self and deny_ranges always win (also on an embedded IPv4), then the exemptions.
      const selfTable = selfByPort.get(port);
      const selfHit = selfTable && firstHit(subjects, selfTable);
      if (selfHit) return block(address, selfHit);
      const denyHit = firstHit(subjects, deny);
      if (denyHit) return block(address, denyHit);
      if (findRange(ip, exemptions)) return null;
      if (embedded) {
        if (findRange(embedded.ipv4, exemptions)) return null;
        const inner = builtinRange(embedded.ipv4);
        return inner && block(address, { range: inner.range, label: `${inner.label}, embedded in ${embedded.form}` });
      }
      const hit = builtinRange(ip);
      return hit && block(address, hit);
    },
  };
}
