/** What a mint gives the cache: the value, and from when (ms since the epoch) it must be minted again. */
export interface Minted<V> {
  readonly value: V;
  readonly renewAtMs: number;
}

/** How a value was found: in the cache, by joining a mint already under way, or by minting it. */
export type CacheOutcome = 'hit' | 'joined' | 'minted';

/**
 * A bounded LRU of minted values with one mint in flight per key: concurrent misses for a key wait
 * for the same mint instead of each signing a certificate. A Map keeps insertion order, so
 * re-inserting on every hit makes its first key the least recently used. A failed mint is not
 * cached: the next call tries again.
 */
export class MintCache<V> {
  private readonly entries = new Map<string, Minted<V>>();
  private readonly inFlight = new Map<string, Promise<Minted<V>>>();

  constructor(readonly maxEntries: number) {
    if (!(Number.isSafeInteger(maxEntries) && maxEntries >= 1)) throw new Error(`cache size must be a whole number from 1, got ${maxEntries}`);
  }

  get size(): number {
    return this.entries.size;
  }

  async get(key: string, nowMs: number, mint: () => Promise<Minted<V>>): Promise<{ value: V; outcome: CacheOutcome }> {
    const cached = this.entries.get(key);
    if (cached !== undefined && nowMs < cached.renewAtMs) {
      this.entries.delete(key);
      this.entries.set(key, cached);
      return { value: cached.value, outcome: 'hit' };
    }
    const pending = this.inFlight.get(key);
    if (pending !== undefined) return { value: (await pending).value, outcome: 'joined' };
    const started = mint();
    this.inFlight.set(key, started);
    try {
      const minted = await started;
      this.store(key, minted);
      return { value: minted.value, outcome: 'minted' };
    } finally {
      this.inFlight.delete(key);
    }
  }

  private store(key: string, minted: Minted<V>): void {
    this.entries.delete(key);
    this.entries.set(key, minted);
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }
}
