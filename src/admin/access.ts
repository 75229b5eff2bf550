import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/** Probes stay open for orchestrators: they reveal only up/down (SPEC §5). */
const OPEN_ROUTES = new Set(['/healthz', '/readyz']);

/** Host names a browser uses for a loopback admin; anything else without a token is refused. */
const LOOPBACK_HOST = /^(localhost|127(?:\.[0-9]{1,3}){3}|\[::1\])(?::[0-9]{1,5})?$/i;

export interface AccessOptions {
  /** TOLLGATE_ADMIN_TOKEN, or null: then the admin is loopback-only (serve refuses otherwise). */
  token: string | null;
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** Constant-time comparison; hashing first makes the lengths equal. */
function tokenMatches(presented: string, expected: string): boolean {
  return timingSafeEqual(digest(presented), digest(expected));
}

function bearer(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  const match = header ? /^Bearer[ ]+(\S+)$/i.exec(header) : null;
  return match ? match[1] : null;
}

/**
 * With a token, every route but the probes needs `Authorization: Bearer <token>`. Without one,
 * the admin listens on loopback only, and a Host other than a loopback name is refused: a web
 * page the operator visits could otherwise rebind its own DNS name to 127.0.0.1 and read the
 * audit trail through the browser.
 */
export function registerAccessControl(app: FastifyInstance, opts: AccessOptions): void {
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    if (OPEN_ROUTES.has(request.url.split('?')[0])) return;
    if (opts.token === null) {
      if (!LOOPBACK_HOST.test(request.headers.host ?? '')) {
        return reply.code(403).send({ error: 'admin without a token answers loopback host names only' });
      }
      return;
    }
    const presented = bearer(request);
    if (presented === null || !tokenMatches(presented, opts.token)) {
      return reply.code(401).header('WWW-Authenticate', 'Bearer realm="tollgate"').send({ error: 'authentication required' });
    }
  });
}
