import type { FastifyRequest } from 'fastify';
import { inRanges } from '../policy/ip-range';
import type { IpRange } from '../policy/ip-range';
import { hasValidBearer, liveSession } from './access';
import type { SessionStore } from './sessions';

/**
 * Who an admin request comes from, for the console's record of who looked (issue 19). This names;
 * it never grants: access control (access.ts) still wants the token or a session.
 */
export type IdentitySource = 'proxy_header' | 'token' | 'session' | 'loopback';

export interface Identity {
  /** `token`, a session's login name (or `session 1a2b3c4d`), a trusted proxy's user, or `loopback`. */
  name: string;
  source: IdentitySource;
}

/** Set by an authenticating reverse proxy (oauth2-proxy, nginx auth_request and the like). */
const FORWARDED_USER_HEADER = 'x-forwarded-user';
const MAX_FORWARDED_USER = 256;

export interface IdentityOptions {
  token: string | null;
  sessions: SessionStore;
  /** --admin-auth-proxy: the peers whose X-Forwarded-User is believed; empty: nobody's. */
  authProxy: readonly IpRange[];
}

/**
 * The X-Forwarded-User header, only from a peer address in --admin-auth-proxy (the TCP peer,
 * not anything a header says): from anywhere else anybody could write any name. One value,
 * printable, at most 256 characters; anything else is ignored as if absent.
 */
export function trustedForwardedUser(request: FastifyRequest, authProxy: readonly IpRange[]): string | null {
  if (authProxy.length === 0) return null;
  const peer = request.socket.remoteAddress;
  if (peer === undefined || !inRanges(authProxy, peer)) return null;
  const header = request.headers[FORWARDED_USER_HEADER];
  if (typeof header !== 'string') return null;
  const name = header.trim();
  if (name === '' || name.length > MAX_FORWARDED_USER || /[\u0000-\u001f\u007f]/.test(name)) return null;
  return name;
}

/** The most specific name a request carries: a trusted proxy's user, then the token, a session, loopback. */
export function identify(request: FastifyRequest, opts: IdentityOptions): Identity {
  const forwarded = trustedForwardedUser(request, opts.authProxy);
  if (forwarded !== null) return { name: forwarded, source: 'proxy_header' };
  if (hasValidBearer(request, opts.token)) return { name: 'token', source: 'token' };
  const session = liveSession(request, opts.sessions);
  if (session !== null) {
    return { name: opts.sessions.label(session) ?? `session ${opts.sessions.publicId(session)}`, source: 'session' };
  }
  return { name: 'loopback', source: 'loopback' };
}
