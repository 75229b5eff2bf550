/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) plus the proxy's own: never forwarded in either
 * direction. Proxy-Authorization carries the client's credentials to us, not to the origin.
 */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/**
 * Framing and routing headers a `Connection` token must never remove: stripping
 * Content-Length while still streaming the body would let the body reach the origin
 * unframed, i.e. as a second, unchecked request (request smuggling).
 */
const NEVER_HOP_BY_HOP = new Set(['content-length', 'transfer-encoding', 'host']);

/** RFC 9110 §7.6.1: headers named in Connection are hop-by-hop too. */
function namedInConnection(rawHeaders: string[]): Set<string> {
  const named = new Set<string>();
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i].toLowerCase() !== 'connection') continue;
    for (const token of rawHeaders[i + 1].split(',')) {
      const name = token.trim().toLowerCase();
      if (name && !NEVER_HOP_BY_HOP.has(name)) named.add(name);
    }
  }
  return named;
}

/**
 * Copy end-to-end headers in their original order and spelling (as a flat name/value list,
 * which keeps repeated headers such as Set-Cookie apart), dropping hop-by-hop ones and `drop`.
 */
export function endToEndHeaders(rawHeaders: string[], drop: ReadonlySet<string> = new Set()): string[] {
  const named = namedInConnection(rawHeaders);
  const kept: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i].toLowerCase();
    if (HOP_BY_HOP.has(name) || named.has(name) || drop.has(name)) continue;
    kept.push(rawHeaders[i], rawHeaders[i + 1]);
  }
  return kept;
}
