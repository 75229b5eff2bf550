import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { crossSiteProblem, SAFE_METHODS } from './same-origin';
import { loginPageFor } from './next-path';
import { readSessionCookie } from './sessions';
import type { SessionStore } from './sessions';

/** Probes stay open for orchestrators: they reveal only up/down (SPEC §5). */
const OPEN_ROUTES: ReadonlySet<string> = new Set(['/healthz', '/readyz']);

/**
 * The login page, what it loads, and the login/logout endpoints: reachable without credentials
 * so that a browser can log in. Exact paths only, never prefixes. The UI's login page must load
 * nothing else.
 */
export const LOGIN_ROUTES: ReadonlySet<string> = new Set([
  '/login', '/login.html', '/login.js', '/login.css', '/style.css', '/favicon.ico', '/logout', '/api/logout',
]);

/** Host names a browser uses for a loopback admin; anything else without a token is refused. */
const LOOPBACK_HOST = /^(localhost|127(?:\.[0-9]{1,3}){3}|\[::1\])(?::[0-9]{1,5})?$/i;

export interface AccessOptions {
  /** TOLLGATE_ADMIN_TOKEN, or null: then the admin is loopback-only (serve refuses otherwise). */
  token: string | null;
  sessions: SessionStore;
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** Constant-time comparison; hashing first makes the lengths equal. */
export function tokenMatches(presented: string, expected: string): boolean {
  return timingSafeEqual(digest(presented), digest(expected));
}

function bearer(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  const match = header ? /^Bearer[ ]+(\S+)$/i.exec(header) : null;
  return match ? match[1] : null;
}

function pathOf(url: string): string {
  const end = url.indexOf('?');
  return end < 0 ? url : url.slice(0, end);
}

export function hasValidBearer(request: FastifyRequest, token: string | null): boolean {
  const presented = bearer(request);
  return token !== null && presented !== null && tokenMatches(presented, token);
}

/** The request's session id when its cookie names a live session; null otherwise. */
export function liveSession(request: FastifyRequest, sessions: SessionStore): string | null {
  const id = readSessionCookie(request.headers.cookie);
  return id !== null && sessions.isValid(id) ? id : null;
}

export function hasValidSession(request: FastifyRequest, sessions: SessionStore): boolean {
  return liveSession(request, sessions) !== null;
}

/** A person at a browser asking for a page (not the API, not a scraper): send them to log in. */
function wantsPage(request: FastifyRequest, path: string): boolean {
  if (request.method !== 'GET' && request.method !== 'HEAD') return false;
  if (path.startsWith('/api/') || path === '/metrics') return false;
  return (request.headers.accept ?? '').includes('text/html');
}

/**
 * Whether a request would pass access control on a route that is not open: the token or a live
 * session, or, without a token, a loopback host name. The open probes use it to show their
 * details (an error text naming a database host and user) only to those who could read the rest.
 */
export function isAuthenticated(request: FastifyRequest, opts: AccessOptions): boolean {
  if (opts.token === null) return LOOPBACK_HOST.test(request.headers.host ?? '');
  return hasValidBearer(request, opts.token) || hasValidSession(request, opts.sessions);
}

/**
 * With a token, every route but the probes and the login page needs `Authorization: Bearer
 * <token>` or a live session cookie (POST /login). Without one, the admin listens on loopback
 * only, and a Host other than a loopback name is refused: a web page the operator visits could
 * otherwise rebind its own DNS name to 127.0.0.1 and read the audit trail through the browser.
 * State-changing requests must come from the admin's own pages (same-origin.ts), unless they
 * carry the bearer token, which no other site can make a browser send.
 */
export function registerAccessControl(app: FastifyInstance, opts: AccessOptions): void {
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    const path = pathOf(request.url);
    if (OPEN_ROUTES.has(path)) return;
    if (opts.token === null && !LOOPBACK_HOST.test(request.headers.host ?? '')) {
      return reply.code(403).send({ error: 'admin without a token answers loopback host names only' });
    }
    const bearerOk = hasValidBearer(request, opts.token);
    if (!SAFE_METHODS.has(request.method) && !bearerOk) {
      const problem = crossSiteProblem(request);
      if (problem !== null) return reply.code(403).send({ error: problem });
    }
    if (opts.token === null || bearerOk || LOGIN_ROUTES.has(path)) return;
    if (hasValidSession(request, opts.sessions)) return;
    // The login page is told where the visit was going, so a shared link survives signing in.
    if (wantsPage(request, path)) return reply.code(303).header('location', loginPageFor(request.url)).send();
    return reply.code(401).header('WWW-Authenticate', 'Bearer realm="tollgate"').send({ error: 'authentication required' });
  });
}
