import { isIP } from 'node:net';
import { ProxyError } from './errors';
import type { HostKind, Target } from './target-types';

export type { Target, HostKind, RequestKind } from './target-types';

/** Reason phrases for malformed targets; shared with tests, so the two cannot drift apart. */
export const TargetReason = {
  empty: 'empty target',
  controlChars: 'target contains control characters or spaces',
  noPort: 'CONNECT target needs host:port',
  badPort: 'port must be 1-65535',
  unbracketedIpv6: 'IPv6 addresses must be in brackets, e.g. [2001:db8::1]:443',
  badHost: 'invalid host name',
  userinfoInAuthority: 'CONNECT target must not contain userinfo, path or query',
  originForm: 'tollgate is a forward proxy: send an absolute URI (http://host/path) or CONNECT',
  httpsUri: 'https:// URIs are not forwarded: use CONNECT (set HTTPS_PROXY) so TLS stays end to end',
  badScheme: 'only http:// URIs can be forwarded',
  backslashInAuthority: 'a backslash is not allowed in the URI authority',
} as const;

const MAX_NAME_LENGTH = 253;
/** Letters, digits, hyphen and underscore (seen in real service names), 1-63 per label. */
const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;
// RFC 9112 §3.2.3: authority-form is uri-host ":" port. Brackets only around IPv6.
const BRACKETED_AUTHORITY = /^\[([^\]]*)\]:([0-9]*)$/;
const PLAIN_AUTHORITY = /^([^:[\]]*):([0-9]*)$/;
// Bytes a URL parser would silently strip or that end a request line.
/** Control characters and spaces: never in a request-target or an authority. */
export const CONTROL_OR_SPACE = /[\u0000-\u0020\u007f]/;

function badTarget(reason: string): ProxyError {
  return new ProxyError(400, 'bad_target', reason);
}

function parsePort(text: string): number {
  if (!/^[0-9]{1,5}$/.test(text)) throw badTarget(TargetReason.badPort);
  const port = Number(text);
  if (port < 1 || port > 65535) throw badTarget(TargetReason.badPort);
  return port;
}

/**
 * Normalise a host the way the WHATWG URL parser does (lower case, punycode, legacy IPv4
 * spellings such as 0x7f.1 or 2130706433 made canonical), then drop one trailing dot.
 * Using the same parser for CONNECT and absolute URIs means one host can never be read two ways.
 */
export function normaliseHost(raw: string): { host: string; hostKind: HostKind } {
  // Already canonical: net.isIP accepts only plain dotted decimal (no leading zeros, no hex or
  // short forms), which the URL parser returns unchanged.
  if (isIP(raw) === 4) return { host: raw, hostKind: 'ipv4' };
  let hostname: string;
  try {
    hostname = new URL(`http://${raw}/`).hostname;
  } catch {
    throw badTarget(TargetReason.badHost);
  }
  return classifyHostname(hostname);
}

function classifyHostname(hostname: string): { host: string; hostKind: HostKind } {
  if (hostname.startsWith('[')) return { host: hostname.slice(1, -1), hostKind: 'ipv6' };
  const host = hostname.endsWith('.') ? hostname.slice(0, -1) : hostname;
  if (isIP(host) === 4) return { host, hostKind: 'ipv4' };
  if (host.length === 0 || host.length > MAX_NAME_LENGTH) throw badTarget(TargetReason.badHost);
  if (!host.split('.').every((label) => LABEL.test(label))) throw badTarget(TargetReason.badHost);
  return { host, hostKind: 'name' };
}

/** Parse a CONNECT request-target (authority-form). */
export function parseConnectTarget(authority: string | undefined): Target {
  if (!authority) throw badTarget(TargetReason.empty);
  if (CONTROL_OR_SPACE.test(authority)) throw badTarget(TargetReason.controlChars);
  if (/[@/?#\\]/.test(authority)) throw badTarget(TargetReason.userinfoInAuthority);
  const bracketed = BRACKETED_AUTHORITY.exec(authority);
  if (bracketed) {
    const port = parsePort(bracketed[2]);
    if (isIP(bracketed[1]) !== 6) throw badTarget(TargetReason.badHost);
    return connectTarget(normaliseHost(`[${bracketed[1]}]`), port);
  }
  const plain = PLAIN_AUTHORITY.exec(authority);
  if (plain) {
    if (plain[1] === '') throw badTarget(TargetReason.empty);
    return connectTarget(normaliseHost(plain[1]), parsePort(plain[2]));
  }
  if (authority.split(':').length > 2) throw badTarget(TargetReason.unbracketedIpv6);
  throw badTarget(TargetReason.noPort);
}

function connectTarget(host: { host: string; hostKind: HostKind }, port: number): Target {
  return { kind: 'connect', scheme: null, ...host, port, path: null, search: '' };
}

/**
 * Parse the request-target of a plain HTTP request. Only absolute-form http:// URIs are
 * forwarded; the URI host decides and is what upstream receives as Host (RFC 9112 §3.2.2).
 * Userinfo is dropped: `http://allowed@evil/` is a request to `evil`.
 */
export function parseAbsoluteTarget(requestTarget: string | undefined): Target {
  if (!requestTarget) throw badTarget(TargetReason.empty);
  if (CONTROL_OR_SPACE.test(requestTarget)) throw badTarget(TargetReason.controlChars);
  if (requestTarget.startsWith('/') || requestTarget === '*') throw badTarget(TargetReason.originForm);
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(requestTarget)?.[1].toLowerCase();
  if (scheme === 'https') throw badTarget(TargetReason.httpsUri);
  if (scheme !== 'http') throw badTarget(TargetReason.badScheme);
  // WHATWG ends the authority at a backslash (`http://a:81\@b/` is host a, port 81) while the
  // RFC 3986 split below reads b: refuse rather than take the host and port from different readings.
  if (/^[^:]*:\/\/[^/?#]*\\/.test(requestTarget)) throw badTarget(TargetReason.backslashInAuthority);
  const authority = /^[a-zA-Z]+:\/\/(?:[^@/?#]*@)?(\[[^\]]*\]|[^:/?#]*)(?::([^/?#]*))?/.exec(requestTarget);
  if (!authority || authority[1] === '') throw badTarget(TargetReason.empty);
  const port = authority[2] === undefined || authority[2] === '' ? 80 : parsePort(authority[2]);
  let url: URL;
  try {
    url = new URL(requestTarget);
  } catch {
    throw badTarget(TargetReason.badHost);
  }
  const host = classifyHostname(url.hostname);
  return { kind: 'http', scheme: 'http', ...host, port, path: normalisePath(url.pathname), search: url.search };
}

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/**
 * RFC 3986 §6.2.2.2: decode percent-encoded unreserved characters, so `/%61dmin` is matched
 * (and forwarded) as `/admin` and a path rule cannot be sidestepped by spelling.
 */
export function normalisePath(pathname: string): string {
  if (!pathname.includes('%')) return pathname;
  return pathname.replace(/%([0-9A-Fa-f]{2})/g, (escape: string, hex: string) => {
    const char = String.fromCharCode(parseInt(hex, 16));
    return UNRESERVED.test(char) ? char : escape.toUpperCase();
  });
}

/** "host:port" with IPv6 bracketed, for messages and the Host header. */
export function formatAuthority(target: Pick<Target, 'host' | 'hostKind' | 'port'>): string {
  const host = target.hostKind === 'ipv6' ? `[${target.host}]` : target.host;
  return `${host}:${target.port}`;
}
