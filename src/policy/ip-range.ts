import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

/** A parsed address range: `addr` is the network address, `bits` the prefix length. */
export interface IpRange {
  addr: ipaddr.IPv4 | ipaddr.IPv6;
  bits: number;
  /** Canonical text, e.g. '10.0.0.0/8', '2001:db8::/32', '127.0.0.1/32'. */
  cidr: string;
}

export type RangeParse = { ok: true; range: IpRange } | { ok: false; message: string };

/**
 * WHATWG URL §3.5 "ends in a number": such a host is read as IPv4, so `0x7f.1`, `127.1`,
 * `2130706433` and `0177.0.0.1` all mean 127.0.0.1. Policy entries use the same reading as
 * target parsing so that a legacy spelling can neither dodge nor widen a rule.
 */
export function endsInNumber(host: string): boolean {
  const labels = host.split('.');
  const last = labels[labels.length - 1] === '' ? labels[labels.length - 2] : labels[labels.length - 1];
  return last !== undefined && /^(\d+|0x[0-9a-f]*)$/i.test(last);
}

/** True when the text is meant as an address or CIDR rather than a host name. */
export function looksLikeIp(text: string): boolean {
  const host = text.split('/')[0] ?? '';
  return host.includes(':') || host.startsWith('[') || endsInNumber(host);
}

/** Canonical dotted quad as the WHATWG URL parser reads the host, or null if it is not one. */
function canonicalIpv4(text: string): string | null {
  try {
    const host = new URL(`http://${text}/`).hostname;
    return ipaddr.IPv4.isValidFourPartDecimal(host) ? host : null;
  } catch {
    return null;
  }
}

/**
 * IPv6 as the WHATWG URL parser serialises it (RFC 5952, hex only). Going through it first
 * also avoids an ipaddr.js quirk: it reads the IPv4-compatible `::a.b.c.d` (RFC 4291
 * §2.5.5.1) as the IPv4-mapped `::ffff:a.b.c.d`, which would make it match IPv4 entries.
 */
export function canonicalIpv6(text: string): string | null {
  try {
    const host = new URL(`http://[${text}]/`).hostname;
    return host.slice(1, -1);
  } catch {
    return null;
  }
}

function parseAddress(text: string): ipaddr.IPv4 | ipaddr.IPv6 | string {
  if (text.startsWith('[')) return `write IPv6 addresses without brackets: "${text.replace(/^\[|\]$/g, '')}"`;
  if (text.includes('%')) return `"${text}": zone identifiers (%...) are not allowed`;
  if (text.includes(':')) {
    const v6 = canonicalIpv6(text);
    return v6 === null ? `"${text}" is not a valid IPv6 address` : ipaddr.IPv6.parse(v6);
  }
  const v4 = canonicalIpv4(text);
  return v4 === null ? `"${text}" is not a valid IPv4 address` : ipaddr.IPv4.parse(v4);
}

/** IPv4-mapped IPv6 (::ffff:a.b.c.d) is the IPv4 address: compare it as such. */
function unmapRange(addr: ipaddr.IPv4 | ipaddr.IPv6, bits: number): [ipaddr.IPv4 | ipaddr.IPv6, number] {
  if (addr.kind() === 'ipv6' && bits >= 96 && (addr as ipaddr.IPv6).isIPv4MappedAddress()) {
    return [(addr as ipaddr.IPv6).toIPv4Address(), bits - 96];
  }
  return [addr, bits];
}

function parseBits(text: string | undefined, max: number): number | null {
  if (text === undefined) return max;
  if (!/^\d{1,3}$/.test(text)) return null;
  const bits = Number(text);
  return bits <= max ? bits : null;
}

/**
 * Parses `ADDR` or `ADDR/BITS` (a bare address is /32 or /128). A range with host bits set
 * (`10.0.0.1/8`) is refused: it is almost always a typo, and the message names the fix.
 */
export function parseRange(text: string): RangeParse {
  const [addrText = '', bitsText, extra] = text.split('/');
  const parsed = parseAddress(addrText);
  if (typeof parsed === 'string') return { ok: false, message: parsed };
  const max = parsed.kind() === 'ipv4' ? 32 : 128;
  const rawBits = extra === undefined ? parseBits(bitsText, max) : null;
  if (rawBits === null) return { ok: false, message: `"${text}" has a bad prefix length (0-${max})` };
  const [addr, bits] = unmapRange(parsed, rawBits);
  const network = ipaddr.parse(networkAddress(addr, bits));
  const cidr = `${network.toString()}/${bits}`;
  if (network.toString() !== addr.toString()) {
    return { ok: false, message: `"${text}" has host bits set; did you mean "${cidr}"?` };
  }
  return { ok: true, range: { addr: network, bits, cidr } };
}

function networkAddress(addr: ipaddr.IPv4 | ipaddr.IPv6, bits: number): string {
  const cidr = `${addr.toString()}/${bits}`;
  return addr.kind() === 'ipv4'
    ? ipaddr.IPv4.networkAddressFromCIDR(cidr).toString()
    : ipaddr.IPv6.networkAddressFromCIDR(cidr).toString();
}

/** Parses a literal address as a target or source gives it; IPv4-mapped IPv6 is unmapped. */
export function parseLiteral(text: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  const bare = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  // Fast path: runs for every request's source address; isIP 4 means plain dotted decimal.
  if (isIP(bare) === 4) return new ipaddr.IPv4(bare.split('.').map(Number));
  const canonical = isIP(bare) === 6 && !bare.includes('%') ? canonicalIpv6(bare) : null;
  return canonical === null ? null : ipaddr.process(canonical);
}

export function rangeContains(range: IpRange, addr: ipaddr.IPv4 | ipaddr.IPv6): boolean {
  return addr.kind() === range.addr.kind() && addr.match(range.addr, range.bits);
}

/** A literal address (a socket's peer, a recorded client) is in one of the ranges; false when it is no address. */
export function inRanges(ranges: readonly IpRange[], ip: string): boolean {
  const addr = parseLiteral(ip);
  return addr !== null && ranges.some((range) => rangeContains(range, addr));
}
