import { ProxyError } from '../request/errors';
import { CredentialCache } from './credential-cache';
import { FailureLimiter } from './failure-limiter';
import { hashPassword, parseHash, verifyPassword } from './password-hash';
import type { ParsedHash } from './password-hash';

/** `settings.auth` in the policy. */
export type AuthMode = 'off' | 'optional' | 'required';

/** Documented in docs/operations.md "Proxy credentials". */
export const AUTH_LIMITS = {
  /** A verified credential is trusted this long without running scrypt again. */
  cacheTtlMs: 5 * 60_000,
  cacheEntries: 10_000,
  /** Failed logins per source address per window before it gets 429. */
  failuresPerWindow: 10,
  failureWindowMs: 60_000,
  /**
   * scrypt runs on libuv's thread pool (4 threads), which dns.lookup shares: at most this many
   * checks at once, so a flood of logins cannot starve destination DNS for everyone.
   */
  concurrentChecks: 2,
  /** Checks waiting for a slot; past it the client gets 429. */
  queuedChecks: 64,
} as const;

export const AuthReason = {
  required: 'proxy authentication required',
  invalid: 'invalid proxy credentials',
  tooManyFailures: 'too many failed proxy logins from this address',
  busy: 'too many proxy logins being checked; try again',
} as const;

interface Credentials {
  user: string;
  password: string;
}

/** RFC 7617 Basic: base64 of user ":" password; anything else counts as no valid credentials. */
export function parseProxyAuthorization(header: string | undefined): Credentials | null {
  const match = header ? /^Basic[ ]+([A-Za-z0-9+/]+=*)$/i.exec(header.trim()) : null;
  if (!match) return null;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) return null;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/**
 * Proxy credentials against the users file. The password is compared in constant time by
 * scrypt + timingSafeEqual; an unknown user costs the same scrypt as a known one, so timing
 * does not reveal which names exist.
 */
export class Authenticator {
  private readonly cache = new CredentialCache(AUTH_LIMITS.cacheTtlMs, AUTH_LIMITS.cacheEntries);
  private readonly limiter: FailureLimiter;
  private decoy: Promise<ParsedHash> | null = null;

  /** `failuresPerWindow`: a proxy worker's share of the box's allowance (serve --workers). */
  constructor(
    private readonly users: () => ReadonlyMap<string, ParsedHash>,
    private readonly clock: () => number = Date.now,
    failuresPerWindow: number = AUTH_LIMITS.failuresPerWindow,
  ) {
    this.limiter = new FailureLimiter(failuresPerWindow, AUTH_LIMITS.failureWindowMs);
  }

  /** The users file changed: forget what was verified against the old one. */
  usersChanged(): void {
    this.cache.clear();
  }

  /** The authenticated user name, or null (anonymous); throws 407 or 429 as a ProxyError. */
  async authenticate(header: string | undefined, mode: AuthMode, source: string): Promise<string | null> {
    if (mode === 'off') return null;
    const credentials = parseProxyAuthorization(header);
    if (credentials === null) {
      if (header === undefined && mode === 'optional') return null;
      throw new ProxyError(407, header === undefined ? 'auth_required' : 'auth_failed', header === undefined ? AuthReason.required : AuthReason.invalid);
    }
    const now = this.clock();
    // A verified credential passes even while others from the same address are failing.
    if (this.cache.has(credentials.user, credentials.password, now)) return credentials.user;
    const wait = this.limiter.blockedFor(source, now);
    if (wait > 0) throw new ProxyError(429, 'auth_rate_limited', AuthReason.tooManyFailures, wait);
    // Counted before the slow check, so parallel guesses cannot all slip under the limit.
    this.limiter.fail(source, now);
    if (await this.checkShared(credentials)) {
      this.limiter.succeed(source);
      this.cache.remember(credentials.user, credentials.password, now);
      return credentials.user;
    }
    throw new ProxyError(407, 'auth_failed', AuthReason.invalid);
  }

  private readonly inFlight = new Map<string, Promise<boolean>>();
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  /** One check per distinct credential at a time, within the concurrency limit. */
  private checkShared(credentials: Credentials): Promise<boolean> {
    const key = this.cache.digest(credentials.user, credentials.password);
    let check = this.inFlight.get(key);
    if (!check) {
      check = this.withSlot(() => this.check(credentials)).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, check);
    }
    return check;
  }

  private async withSlot<T>(work: () => Promise<T>): Promise<T> {
    if (this.running >= AUTH_LIMITS.concurrentChecks) {
      if (this.waiting.length >= AUTH_LIMITS.queuedChecks) throw new ProxyError(429, 'auth_rate_limited', AuthReason.busy, 1);
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    this.running += 1;
    try {
      return await work();
    } finally {
      this.running -= 1;
      this.waiting.shift()?.();
    }
  }

  private async check({ user, password }: Credentials): Promise<boolean> {
    const stored = this.users().get(user);
    if (stored) return verifyPassword(password, stored);
    await verifyPassword(password, await this.decoyHash());
    return false;
  }

  private decoyHash(): Promise<ParsedHash> {
    this.decoy ??= hashPassword('decoy password, never valid').then((text) => parseHash(text) as ParsedHash);
    return this.decoy;
  }
}
