import { isIPv4, isIPv6 } from 'node:net';
import { canonicalIpv6 } from '../policy/ip-range';

/**
 * A strict reader of the PROXY protocol header, v1 (text) and v2 (binary), as HAProxy's
 * proxy-protocol.txt (2020-03-05) defines it. Pure: bytes in, a verdict out. It tells "not
 * complete yet" apart from "wrong" so a header split across TCP segments is waited for, and
 * it never looks past the bounds the spec sets (v1: 107 bytes; v2: 16 + its length, capped).
 */

/** v1 §2.1: "a receiver may reject a header longer than 107 bytes" (CRLF included). */
export const V1_MAX_BYTES = 107;

/**
 * v2 leaves the length up to 65535; addresses and the TLVs a load balancer sends (AWS's VPC
 * endpoint id, HAProxy's unique id, SSL facts) fit well within this.
 */
export const V2_MAX_BYTES = 16 + 4096;

export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');

/** The sender's own connection: the header names the real client. */
export interface ProxiedSource {
  readonly kind: 'proxied';
  readonly ip: string;
  readonly port: number;
}

export type ProxyHeaderParse =
  /** More bytes are needed to decide. */
  | { readonly state: 'incomplete' }
  /** Not a PROXY header (the bytes can be anything else). */
  | { readonly state: 'absent' }
  | { readonly state: 'invalid'; readonly message: string }
  /**
   * A whole header of `length` bytes. `source` is null for a v2 LOCAL command (the load
   * balancer's own health check) and for v1 UNKNOWN / v2 UNSPEC, which carry no client.
   */
  | { readonly state: 'header'; readonly length: number; readonly source: ProxiedSource | null };

const INCOMPLETE = { state: 'incomplete' } as const;
const ABSENT = { state: 'absent' } as const;

function invalid(message: string): ProxyHeaderParse {
  return { state: 'invalid', message };
}

/** True while `bytes` could still be the start of either signature. */
function isPrefixOf(bytes: Buffer, signature: Buffer): boolean {
  const n = Math.min(bytes.length, signature.length);
  return bytes.subarray(0, n).equals(signature.subarray(0, n));
}

/** Read a PROXY header at the start of `bytes`, which holds everything received so far. */
export function parseProxyHeader(bytes: Buffer): ProxyHeaderParse {
  if (bytes.length === 0) return INCOMPLETE;
  if (isPrefixOf(bytes, V1_PREFIX)) return bytes.length < V1_PREFIX.length ? INCOMPLETE : parseV1(bytes);
  if (isPrefixOf(bytes, V2_SIGNATURE)) return bytes.length < V2_SIGNATURE.length ? INCOMPLETE : parseV2(bytes);
  return ABSENT;
}

/**
 * True once the bytes can be neither header's signature: what a connection from an address
 * not allowed to send one starts with decides whether it is refused.
 */
export function startsLikeProxyHeader(bytes: Buffer): 'yes' | 'no' | 'undecided' {
  for (const signature of [V1_PREFIX, V2_SIGNATURE]) {
    if (isPrefixOf(bytes, signature)) return bytes.length >= signature.length ? 'yes' : 'undecided';
  }
  return 'no';
}

const PORT = /^(0|[1-9][0-9]{0,4})$/;

function parsePort(text: string): number | null {
  if (!PORT.test(text)) return null;
  const port = Number(text);
  return port <= 65535 ? port : null;
}

/** v1 §2.1: `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n`, single spaces, or `PROXY UNKNOWN...\r\n`. */
function parseV1(bytes: Buffer): ProxyHeaderParse {
  const end = bytes.subarray(0, V1_MAX_BYTES).indexOf('\r\n', 0, 'latin1');
  if (end === -1) {
    // A lone CR must be followed by LF; anything else is already wrong.
    const cr = bytes.subarray(0, V1_MAX_BYTES).indexOf(0x0d);
    if (cr !== -1 && cr + 1 < bytes.length) return invalid('v1 header: CR not followed by LF');
    return bytes.length >= V1_MAX_BYTES ? invalid(`v1 header longer than ${V1_MAX_BYTES} bytes`) : INCOMPLETE;
  }
  const line = bytes.subarray(0, end).toString('latin1');
  const length = end + 2;
  if (/[^\x20-\x7e]/.test(line)) return invalid('v1 header: unprintable byte');
  const words = line.split(' ');
  if (words[1] === 'UNKNOWN') return { state: 'header', length, source: null };
  if (words.length !== 6) return invalid('v1 header: expected PROXY TCP4|TCP6 SRC DST SPORT DPORT');
  const [, family, src, dst, sport, dport] = words as [string, string, string, string, string, string];
  const isFamily = family === 'TCP4' ? isIPv4 : family === 'TCP6' ? isIPv6 : null;
  if (isFamily === null) return invalid(`v1 header: unknown protocol "${family.slice(0, 16)}"`);
  if (!isFamily(src) || !isFamily(dst) || src.includes('%') || dst.includes('%')) {
    return invalid(`v1 header: addresses are not ${family}`);
  }
  const port = parsePort(sport);
  if (port === null || parsePort(dport) === null) return invalid('v1 header: bad port');
  return { state: 'header', length, source: { kind: 'proxied', ip: family === 'TCP6' ? canonicalClientIpv6(src) : src, port } };
}

const V2_COMMAND_LOCAL = 0x0;
const V2_COMMAND_PROXY = 0x1;
const FAMILY_UNSPEC = 0x0;
/** UNSPEC, TCP/UDP over IPv4, TCP/UDP over IPv6, UNIX stream/datagram (§2.2). */
const V2_FAMILY_BYTES = new Set([0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32]);
const FAMILY_INET = 0x1;
const FAMILY_INET6 = 0x2;
const TRANSPORT_STREAM = 0x1;

/** v2 §2.2: signature, version/command, family/transport, length (big-endian), addresses, TLVs. */
function parseV2(bytes: Buffer): ProxyHeaderParse {
  if (bytes.length < 16) return checkV2Start(bytes) ?? INCOMPLETE;
  const problem = checkV2Start(bytes);
  if (problem) return problem;
  const length = 16 + bytes.readUInt16BE(14);
  if (length > V2_MAX_BYTES) return invalid(`v2 header longer than ${V2_MAX_BYTES} bytes`);
  if (bytes.length < length) return INCOMPLETE;
  const command = bytes[12] & 0x0f;
  // §2.2: with LOCAL "the receiver must accept this connection as valid and must use the real
  // connection endpoints and discard the protocol block including the family".
  if (command === V2_COMMAND_LOCAL) return { state: 'header', length, source: null };
  // §2.2: only these family/transport bytes exist; any other value must be refused.
  if (!V2_FAMILY_BYTES.has(bytes[13])) return invalid(`v2 header: unknown address family/protocol byte 0x${bytes[13].toString(16).padStart(2, '0')}`);
  const family = bytes[13] >> 4;
  const transport = bytes[13] & 0x0f;
  if (family === FAMILY_UNSPEC) return { state: 'header', length, source: null };
  if (transport !== TRANSPORT_STREAM) return invalid('v2 header: only STREAM (TCP) connections are proxied here');
  if (family === FAMILY_INET) {
    if (length < 16 + 12) return invalid('v2 header: address block too short for INET');
    const ip = [...bytes.subarray(16, 20)].join('.');
    return { state: 'header', length, source: { kind: 'proxied', ip, port: bytes.readUInt16BE(24) } };
  }
  if (family === FAMILY_INET6) {
    if (length < 16 + 36) return invalid('v2 header: address block too short for INET6');
    return { state: 'header', length, source: { kind: 'proxied', ip: ipv6Text(bytes.subarray(16, 32)), port: bytes.readUInt16BE(48) } };
  }
  return invalid('v2 header: only INET and INET6 addresses are proxied here');
}

/** The version and command bytes, as far as they have arrived. */
function checkV2Start(bytes: Buffer): ProxyHeaderParse | null {
  if (bytes.length > 12 && bytes[12] >> 4 !== 2) return invalid('v2 header: version is not 2');
  if (bytes.length > 12 && (bytes[12] & 0x0f) !== V2_COMMAND_LOCAL && (bytes[12] & 0x0f) !== V2_COMMAND_PROXY) {
    return invalid('v2 header: unknown command');
  }
  return null;
}

/**
 * RFC 5952 text, as Node's own sockets report addresses, so that the same client reads the
 * same with or without a load balancer in front; IPv4-mapped addresses become IPv4 (as
 * client-address.ts does for a dual-stack listener) so they match IPv4 `sources`.
 */
function canonicalClientIpv6(text: string): string {
  // The text was checked as IPv6 already (or built from 16 bytes); null cannot come back, and
  // if it did the text would be kept rather than thrown on inside a 'data' listener.
  const canonical = canonicalIpv6(text) ?? text;
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (mapped === null) return canonical;
  const [high, low] = [parseInt(mapped[1], 16), parseInt(mapped[2], 16)];
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
}

function ipv6Text(raw: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(raw.readUInt16BE(i).toString(16));
  return canonicalClientIpv6(groups.join(':'));
}
