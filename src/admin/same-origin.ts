import type { FastifyRequest } from 'fastify';

/** Methods that change nothing (RFC 9110 §9.2.1) need no cross-site request check. */
export const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Why a state-changing request is refused as cross-site, or null when it comes from our own
 * pages. Browsers send `Sec-Fetch-Site` (Fetch Metadata) and `Origin` on every POST; a request
 * with neither is refused too, so a browser that leaves them out cannot be used for login CSRF
 * (a script or curl sets `Origin` itself). SameSite=Strict on the session cookie already keeps
 * the cookie off cross-site requests; this also covers the login form, which has no cookie yet.
 *
 * `Origin: null` is what a browser sends for a same-origin form post from a page whose referrer
 * policy is no-referrer (Fetch §3.1, "append a request Origin header"), and our pages have that
 * policy. It is accepted only when `Sec-Fetch-Site: same-origin` vouches for the request: a
 * `Sec-` header is a forbidden header name, which no page script can set.
 */
export function crossSiteProblem(request: FastifyRequest): string | null {
  const site = request.headers['sec-fetch-site'];
  const origin = request.headers.origin;
  if (site === undefined && origin === undefined) {
    return 'cross-site request check: send an Origin header naming this admin';
  }
  if (site !== undefined && site !== 'same-origin') return `cross-site request refused (Sec-Fetch-Site: ${site})`;
  if (origin === undefined || origin === ownOrigin(request)) return null;
  if (origin === 'null' && site === 'same-origin') return null;
  return 'cross-site request refused (Origin does not match)';
}

function ownOrigin(request: FastifyRequest): string {
  return `${request.protocol}://${(request.headers.host ?? '').toLowerCase()}`;
}
