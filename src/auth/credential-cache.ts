import { createHmac, randomBytes } from 'node:crypto';

/**
 * Successful credential checks, remembered for a while so that scrypt runs once per
 * credential and TTL rather than per request (squid's credentialsttl works the same way).
 * Keys are an HMAC under a per-process random key: the cache never holds a password.
 */
export class CredentialCache {
  private readonly key = randomBytes(32);
  private readonly entries = new Map<string, number>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries: number,
  ) {}

  /** The cache key of a credential (also used to share checks in flight). */
  digest(user: string, password: string): string {
    return createHmac('sha256', this.key).update(user).update('\0').update(password).digest('base64');
  }

  has(user: string, password: string, now: number): boolean {
    const key = this.digest(user, password);
    const expires = this.entries.get(key);
    if (expires === undefined) return false;
    if (expires > now) return true;
    this.entries.delete(key);
    return false;
  }

  remember(user: string, password: string, now: number): void {
    if (this.entries.size >= this.maxEntries) {
      // Maps iterate in insertion order: drop the oldest.
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    this.entries.set(this.digest(user, password), now + this.ttlMs);
  }

  clear(): void {
    this.entries.clear();
  }
}
