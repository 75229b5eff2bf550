import { createHash, randomBytes } from 'node:crypto';

export const SESSION_COOKIE = 'tollgate_session';

/** 32 random bytes in base64url: 43 characters. */
const SESSION_ID = /^[A-Za-z0-9_-]{43}$/;

export interface SessionStoreOptions {
  ttlMs: number;
  /** Past this many live sessions the oldest is dropped: a login loop cannot grow memory. */
  maxSessions: number;
  clock: () => Date;
}

export const SESSION_DEFAULTS = Object.freeze({ ttlMs: 12 * 3_600_000, maxSessions: 1000 });

/**
 * Admin UI sessions, in memory: a restart logs everyone out, which for a single-process admin
 * is simpler and safer than persisting bearer-equivalent secrets. Only a hash of each id is
 * kept, so the lookup time does not depend on how much of a guessed id is right.
 */
interface Session {
  expiresAt: number;
  /** Who logged in, when known (a trusted auth proxy named them): the console's accountability. */
  label: string | null;
}

export class SessionStore {
  /** By the hash of the id; in creation order, so the first is the oldest. */
  private readonly sessions = new Map<string, Session>();

  constructor(private readonly opts: SessionStoreOptions) {}

  /** A new session id; it expires ttlMs from now whatever happens (no sliding renewal). */
  create(label: string | null = null): string {
    this.sweep();
    while (this.sessions.size >= this.opts.maxSessions) {
      const oldest = this.sessions.keys().next();
      if (oldest.done === true) break;
      this.sessions.delete(oldest.value);
    }
    const id = randomBytes(32).toString('base64url');
    this.sessions.set(hashId(id), { expiresAt: this.now() + this.opts.ttlMs, label });
    return id;
  }

  /** Who logged in with this live session, when known. */
  label(id: string): string | null {
    return this.live(id)?.label ?? null;
  }

  /**
   * A short name for a session that tells sessions apart in the console's events and reveals
   * nothing of the id: the first 8 characters of its hash (the id itself is a bearer secret).
   */
  publicId(id: string): string {
    return hashId(id).slice(0, 8);
  }

  isValid(id: string): boolean {
    return this.live(id) !== null;
  }

  revoke(id: string): void {
    this.sessions.delete(hashId(id));
  }

  get size(): number {
    return this.sessions.size;
  }

  get ttlSeconds(): number {
    return Math.floor(this.opts.ttlMs / 1000);
  }

  /** The session, unless the id is malformed, unknown or expired (an expired one is dropped). */
  private live(id: string): Session | null {
    if (!SESSION_ID.test(id)) return null;
    const key = hashId(id);
    const session = this.sessions.get(key);
    if (session === undefined) return null;
    if (session.expiresAt <= this.now()) {
      this.sessions.delete(key);
      return null;
    }
    return session;
  }

  private sweep(): void {
    const now = this.now();
    for (const [key, session] of this.sessions) {
      if (session.expiresAt <= now) this.sessions.delete(key);
    }
  }

  private now(): number {
    return this.opts.clock().getTime();
  }
}

function hashId(id: string): string {
  return createHash('sha256').update(id).digest('base64url');
}

/** The session id from a Cookie header (RFC 6265 §5.4: `name=value` pairs joined by "; "). */
export function readSessionCookie(header: string | undefined): string | null {
  if (header === undefined) return null;
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq > 0 && pair.slice(0, eq).trim() === SESSION_COOKIE) return pair.slice(eq + 1).trim();
  }
  return null;
}

/**
 * HttpOnly: scripts (an XSS through a logged host name) cannot read it. SameSite=Strict: no
 * other site's page can make the browser send it. Secure only over TLS: the admin speaks plain
 * HTTP on loopback (or behind a TLS-terminating proxy, which then owns the Secure flag).
 */
export function sessionCookie(id: string, maxAgeSeconds: number, secure: boolean): string {
  return `${SESSION_COOKIE}=${id}; Path=/; Max-Age=${maxAgeSeconds}; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}

export function clearedSessionCookie(secure: boolean): string {
  return sessionCookie('', 0, secure);
}
