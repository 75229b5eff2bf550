export interface LoginLimiterOptions {
  /** Failed logins allowed per source address within windowMs; then 429 until it ends. */
  maxFailures: number;
  windowMs: number;
  /** Addresses tracked at most; the oldest entry goes first (a spray of sources cannot grow memory). */
  maxTracked: number;
  clock: () => Date;
}

export const LOGIN_LIMIT_DEFAULTS = Object.freeze({ maxFailures: 10, windowMs: 60_000, maxTracked: 10_000 });

interface Failures {
  count: number;
  windowStart: number;
}

/**
 * Failed logins per source address, in fixed windows. Guessing a long random token is hopeless
 * anyway; the limit keeps a weak token from being guessed quickly and keeps the log readable.
 */
export class LoginLimiter {
  private readonly failures = new Map<string, Failures>();

  constructor(private readonly opts: LoginLimiterOptions) {}

  /** Milliseconds until this address may try again; 0 when it may now. */
  retryAfterMs(ip: string): number {
    const entry = this.current(ip);
    if (entry === null || entry.count < this.opts.maxFailures) return 0;
    return entry.windowStart + this.opts.windowMs - this.now();
  }

  fail(ip: string): void {
    const entry = this.current(ip) ?? { count: 0, windowStart: this.now() };
    entry.count += 1;
    this.failures.delete(ip);
    this.failures.set(ip, entry);
    while (this.failures.size > this.opts.maxTracked) {
      const oldest = this.failures.keys().next();
      if (oldest.done === true) break;
      this.failures.delete(oldest.value);
    }
  }

  succeed(ip: string): void {
    this.failures.delete(ip);
  }

  private current(ip: string): Failures | null {
    const entry = this.failures.get(ip);
    if (entry === undefined) return null;
    if (this.now() - entry.windowStart >= this.opts.windowMs) {
      this.failures.delete(ip);
      return null;
    }
    return entry;
  }

  private now(): number {
    return this.opts.clock().getTime();
  }
}
