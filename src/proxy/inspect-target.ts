import type { IncomingMessage } from 'node:http';
import { ProxyError } from '../request/errors';
import { CONTROL_OR_SPACE, formatAuthority, normaliseHost, normalisePath } from '../request/target';
import type { HostKind, Target } from '../request/target-types';

/**
 * The target of a request inside an inspected tunnel (SPEC §6): parsed once, like any other, so
 * nothing downstream re-reads the raw strings and reaches another answer, and bound to the
 * tunnel's CONNECT host and port. The client already chose the destination with its CONNECT;
 * a `Host` (or an absolute-form target) that names another host is domain fronting, refused as
 * `host_mismatch`, and never reaches the policy.
 */

/** The reasons this module gives, defined once for code and tests. */
export const InnerTargetReason = {
  noHost: 'a request inside an inspected tunnel needs a Host header (RFC 9112 §3.2)',
  twoHosts: 'more than one Host header',
  badHost: 'the Host header is not a valid host[:port]',
  badTarget: 'the request-target must be a path ("/…") or an https:// URI on the tunnel\'s host',
  mismatch: (named: string, tunnel: string): string => `host_mismatch: the request names ${named}, but its tunnel was opened to ${tunnel} (domain fronting)`,
} as const;

/** A request whose Host names another host or port than its tunnel's CONNECT; `target` is what it is recorded as. */
export class HostMismatchError extends ProxyError {
  constructor(named: string, readonly target: Target) {
    super(403, 'host_mismatch', InnerTargetReason.mismatch(named, formatAuthority(target)));
    this.name = 'HostMismatchError';
  }
}

interface Authority {
  host: string;
  hostKind: HostKind;
  port: number;
}

const HTTPS_DEFAULT_PORT = 443;

/**
 * `host[:port]` as a Host header or URI authority holds it, normalised as a CONNECT host is
 * (punycode, canonical IPv4, IPv6 without brackets); null when it is not one.
 */
function parseAuthority(text: string): Authority | null {
  // Userinfo, a path or a backslash has no place here; the URL parser would quietly split on them.
  if (text === '' || /[\s@/?#\\]/.test(text)) return null;
  let url: URL;
  try {
    url = new URL(`https://${text}/`);
  } catch {
    return null;
  }
  try {
    const { host, hostKind } = normaliseHost(url.hostname);
    // WHATWG drops the scheme's default port: an empty port is 443.
    return { host, hostKind, port: url.port === '' ? HTTPS_DEFAULT_PORT : Number(url.port) };
  } catch {
    return null;
  }
}

function hostHeaderOf(req: IncomingMessage): string {
  const values: string[] = [];
  // Node keeps only the first of several Host headers in req.headers: count the raw ones.
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (req.rawHeaders[i].toLowerCase() === 'host') values.push(req.rawHeaders[i + 1]);
  }
  if (values.length === 0) throw new ProxyError(400, 'bad_request', InnerTargetReason.noHost);
  if (values.length > 1) throw new ProxyError(400, 'bad_request', InnerTargetReason.twoHosts);
  return values[0].trim();
}

function sameAuthority(a: Authority, b: Authority): boolean {
  return a.host === b.host && a.port === b.port;
}

/**
 * A tunnel's own authority, worked out once per tunnel: the origin its requests' paths are read
 * against, and the Host values that name it as written by nearly every client (`host` for port
 * 443, `host:port`), which need no parsing.
 */
export interface TunnelAuthority {
  target: Target;
  origin: string;
  hostValues: ReadonlySet<string>;
}

export function tunnelAuthority(target: Target): TunnelAuthority {
  const authority = formatAuthority(target);
  const hostValues = new Set([authority]);
  if (target.port === HTTPS_DEFAULT_PORT) hostValues.add(target.hostKind === 'ipv6' ? `[${target.host}]` : target.host);
  return { target, origin: `https://${authority}`, hostValues };
}

/** The path and query of an origin-form or https absolute-form request-target, with the authority the latter names. */
function splitRequestTarget(raw: string, tunnel: TunnelAuthority): { authority: Authority | null; url: URL } {
  const bad = (): ProxyError => new ProxyError(400, 'bad_target', InnerTargetReason.badTarget);
  if (CONTROL_OR_SPACE.test(raw)) throw bad();
  if (raw.startsWith('/')) {
    // Prefixed with the tunnel's own authority, so `//other.example/x` stays a path.
    return { authority: null, url: new URL(`${tunnel.origin}${raw}`) };
  }
  const absolute = /^https:\/\/([^/?#]*)(.*)$/i.exec(raw);
  if (absolute === null) throw bad();
  const authority = parseAuthority(absolute[1]);
  if (authority === null) throw bad();
  const rest = absolute[2].startsWith('/') ? absolute[2] : `/${absolute[2]}`;
  return { authority, url: new URL(`${tunnel.origin}${rest}`) };
}

/**
 * The request's target: always the tunnel's host and port, with the request's own path and
 * query. Throws 400 for a malformed target or Host, HostMismatchError (403) for another host.
 */
export function innerTarget(req: IncomingMessage, tunnel: TunnelAuthority): Target {
  const header = hostHeaderOf(req);
  // A Host that is the tunnel's own, as written, needs no parsing; any other is parsed and compared.
  const own = tunnel.hostValues.has(header.toLowerCase());
  const named = own ? null : parseAuthority(header);
  if (!own && named === null) throw new ProxyError(400, 'bad_request', InnerTargetReason.badHost);
  const { authority, url } = splitRequestTarget(req.url ?? '', tunnel);
  const { host, hostKind, port } = tunnel.target;
  const target: Target = { kind: 'https', scheme: 'https', host, hostKind, port, path: normalisePath(url.pathname), search: url.search };
  for (const candidate of [named, authority]) {
    if (candidate !== null && !sameAuthority(candidate, target)) throw new HostMismatchError(formatAuthority(candidate), target);
  }
  return target;
}
