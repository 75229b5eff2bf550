/**
 * Slows password guessing: after `limit` failed proxy logins from one source address within
 * `windowMs`, that source gets 429 until the window has passed. Bounded memory: stale
 * entries are dropped as new ones arrive.
 */
export class FailureLimiter {
  private readonly failures = new Map<string, { count: number; since: number }>();

  constructor(
    readonly limit: number,
    readonly windowMs: number,
    private readonly maxSources = 10_000,
  ) {}

  /** Seconds until the source may try again, or 0 when it may try now. */
  blockedFor(source: string, now: number): number {
    const entry = this.failures.get(source);
    if (!entry || now - entry.since >= this.windowMs) return 0;
    return entry.count >= this.limit ? Math.ceil((entry.since + this.windowMs - now) / 1000) : 0;
  }

  fail(source: string, now: number): void {
    const entry = this.failures.get(source);
    if (entry && now - entry.since < this.windowMs) {
      entry.count += 1;
      return;
    }
    if (this.failures.size >= this.maxSources) this.prune(now);
    this.failures.set(source, { count: 1, since: now });
  }

  succeed(source: string): void {
    this.failures.delete(source);
  }

  private prune(now: number): void {
    for (const [source, entry] of this.failures) {
      if (now - entry.since >= this.windowMs) this.failures.delete(source);
    }
    if (this.failures.size >= this.maxSources) {
      const oldest = this.failures.keys().next().value;
      if (oldest !== undefined) this.failures.delete(oldest);
    }
  }
}
