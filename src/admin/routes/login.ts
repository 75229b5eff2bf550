import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasValidSession, tokenMatches } from '../access';
import { trustedForwardedUser } from '../identity';
import type { IpRange } from '../../policy/ip-range';
import type { LoginLimiter } from '../login-limiter';
import { LOGIN_PAGE, loginPageFor, safeNextPath } from '../next-path';
import { clearedSessionCookie, readSessionCookie, sessionCookie } from '../sessions';
import type { SessionStore } from '../sessions';

export interface LoginRoutesOptions {
  token: string | null;
  sessions: SessionStore;
  limiter: LoginLimiter;
  /** Folder of the UI; its login.html is the login page when present. */
  webDir: string;
  /** --admin-auth-proxy: a login through it names its session after X-Forwarded-User. */
  authProxy: readonly IpRange[];
}

/** A form post carries the token and nothing else worth a larger body. */
const LOGIN_BODY_LIMIT = 4096;

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * Used until the UI ships web-admin/login.html: no script, no inline style (the CSP allows
 * neither). A `next` path rides along as a hidden field.
 */
function fallbackLoginPage(next: string | null): string {
  const hidden = next === null ? '' : `\n    <input type="hidden" name="next" value="${escapeHtml(next)}">`;
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>tollgate admin: log in</title></head>
<body>
  <h1>tollgate</h1>
  <form method="post" action="/login">
    <label>Admin token <input type="password" name="token" autocomplete="current-password" required></label>${hidden}
    <button type="submit">Log in</button>
  </form>
</body>
</html>
`;
}

/** `next` from the form or JSON body (login.js copies it from the page's address), else the query string; `/` unless a safe path (next-path.ts). */
function presentedNext(request: FastifyRequest): string {
  const body = request.body;
  const fromBody = typeof body === 'object' && body !== null && 'next' in body ? (body as { next: unknown }).next : undefined;
  const query = request.query as Record<string, unknown> | undefined;
  return safeNextPath(fromBody ?? query?.next);
}

function presentedToken(body: unknown): string | null {
  if (typeof body !== 'object' || body === null || !('token' in body)) return null;
  const token = (body as { token: unknown }).token;
  return typeof token === 'string' && token.length > 0 && token.length <= LOGIN_BODY_LIMIT ? token : null;
}

/** A plain HTML form post (no script): answer with a page to go to, not a JSON error. */
function isFormPost(request: FastifyRequest): boolean {
  const type = request.headers['content-type'] ?? '';
  return type.startsWith('application/x-www-form-urlencoded') && (request.headers.accept ?? '').includes('text/html');
}

function refuse(request: FastifyRequest, reply: FastifyReply, status: 401 | 429, error: string): FastifyReply {
  if (isFormPost(request)) {
    const reason = status === 429 ? 'rate_limited' : 'invalid';
    return reply.code(303).header('location', loginPageFor(presentedNext(request), { error: reason })).send();
  }
  return reply.code(status).send({ error });
}

function serveLoginPage(opts: LoginRoutesOptions) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    if (fs.existsSync(path.join(opts.webDir, 'login.html'))) return reply.sendFile('login.html');
    const next = presentedNext(request);
    return reply.type('text/html; charset=utf-8').send(fallbackLoginPage(next === '/' ? null : next));
  };
}

/**
 * POST /login exchanges the admin token for a session cookie (SPEC §5: "the session cookie the
 * UI's login sets"), so the browser never has to keep the token in script-readable storage.
 * Form-encoded (`token=...`) or JSON (`{"token": "..."}`); success is 303 to `next` (a path on
 * this admin only: next-path.ts), else to `/`.
 */
export function registerLoginRoutes(app: FastifyInstance, opts: LoginRoutesOptions): void {
  app.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string', bodyLimit: LOGIN_BODY_LIMIT },
    (_request, body, done) => done(null, Object.fromEntries(new URLSearchParams(String(body)))),
  );
  app.get('/login', serveLoginPage(opts));
  app.get(LOGIN_PAGE, serveLoginPage(opts));

  app.post('/login', { bodyLimit: LOGIN_BODY_LIMIT }, async (request, reply) => {
    if (opts.token === null) return reply.code(303).header('location', presentedNext(request)).send();
    const waitMs = opts.limiter.retryAfterMs(request.ip);
    if (waitMs > 0) {
      reply.header('retry-after', String(Math.ceil(waitMs / 1000)));
      return refuse(request, reply, 429, 'too many failed logins from this address; try again later');
    }
    const token = presentedToken(request.body);
    if (token === null || !tokenMatches(token, opts.token)) {
      opts.limiter.fail(request.ip);
      request.log.warn({ ip: request.ip }, 'admin login failed');
      return refuse(request, reply, 401, 'invalid token');
    }
    opts.limiter.succeed(request.ip);
    const id = opts.sessions.create(trustedForwardedUser(request, opts.authProxy));
    return reply
      .code(303)
      .header('set-cookie', sessionCookie(id, opts.sessions.ttlSeconds, request.protocol === 'https'))
      .header('location', presentedNext(request))
      .send();
  });

  /** The UI's sign-out button: the session ends here and now, the cookie is cleared. */
  app.post('/api/logout', async (request, reply) => {
    const hadSession = hasValidSession(request, opts.sessions);
    const id = readSessionCookie(request.headers.cookie);
    if (id !== null) opts.sessions.revoke(id);
    return reply
      .header('set-cookie', clearedSessionCookie(request.protocol === 'https'))
      .send({ signed_out: hadSession, location: opts.token === null ? '/' : LOGIN_PAGE });
  });

  app.post('/logout', async (request, reply) => {
    const id = readSessionCookie(request.headers.cookie);
    if (id !== null) opts.sessions.revoke(id);
    return reply
      .code(303)
      .header('set-cookie', clearedSessionCookie(request.protocol === 'https'))
      .header('location', opts.token === null ? '/' : LOGIN_PAGE)
      .send();
  });
}
