import { createSecureContext } from 'node:tls';
import type { SecureContext } from 'node:tls';
import { InspectCaError } from './ca-error';
import { loadInspectCa, loadUpstreamTrust } from './ca-load';
import type { InspectCa } from './ca-load';
import { leafNameOf, mintLeaf, newLeafKey } from './leaf';
import type { LeafKey, LeafName } from './leaf';
import { MintCache } from './mint-cache';
import type { Minted } from './mint-cache';
import { describeConstraints, permitsHost } from './name-constraints';
import type { Inspection } from './types';

export { InspectCaError } from './ca-error';
export { CA_CERT_FILE, CA_KEY_FILE, loadInspectCa, loadUpstreamTrust } from './ca-load';
export type { InspectCa } from './ca-load';

/**
 * Hosts whose leaf contexts are kept: 1,000 covers the distinct inspected destinations of a large
 * fleet's proxy (a context holds one small certificate and key, a few KB in OpenSSL); past it the
 * least recently used host is minted again on its next tunnel (a few ms).
 */
export const LEAF_CACHE_SIZE = 1000;

/** A cached leaf is minted again this long before it expires, so no client is served one about to lapse. */
const LEAF_RENEW_BEFORE_MS = 3_600_000;

/** Told of every contextFor outcome (metrics.ts wires it to the inspect counters). */
export interface LeafObserver {
  minted(seconds: number): void;
  /** Served from the cache (`hit`), or by a mint another call for the host had started (`joined`). */
  hit(how: 'hit' | 'joined'): void;
}

export interface LeafStats {
  /** Leaf contexts held in the cache now (the tollgate_inspect_leaf_cache_entries gauge). */
  readonly cached: number;
}

/**
 * One P-256 key for every leaf, made at start and held in memory only (the default), or a new key
 * per leaf. Shared saves the key generation and its export, a sixth or so of a mint
 * (docs/performance.md, "Measurements behind the code"), and protects no less: a leaf key is only
 * ever in this process's memory, next to the CA key that can mint any leaf, so whoever can read one
 * can read the other.
 */
export type LeafKeyMode = 'shared' | 'per-leaf';

export interface LeafIssuerOptions {
  readonly cacheSize?: number;
  readonly leafKey?: LeafKeyMode;
  readonly clock?: () => Date;
  readonly observer?: LeafObserver;
}

/** contextFor's refusals: a host the CA's name constraints exclude, or not a host at all. */
export class LeafRefusedError extends Error {
  override readonly name = 'LeafRefusedError';
  constructor(message: string, readonly code: 'inspect_host_not_permitted' | 'inspect_invalid_host') {
    super(message);
  }
}

/** The `Inspection` serve hands the proxy: leaf contexts minted on demand, cached, never written. */
export class LeafIssuer implements Inspection {
  private readonly cache: MintCache<SecureContext>;
  private readonly clock: () => Date;

  private constructor(
    readonly ca: InspectCa,
    readonly upstreamTrust: readonly string[],
    private readonly sharedKey: LeafKey | null,
    private readonly options: LeafIssuerOptions,
  ) {
    this.cache = new MintCache(options.cacheSize ?? LEAF_CACHE_SIZE);
    this.clock = options.clock ?? (() => new Date());
  }

  static async create(ca: InspectCa, upstreamTrust: readonly string[], options: LeafIssuerOptions = {}): Promise<LeafIssuer> {
    const sharedKey = (options.leafKey ?? 'shared') === 'shared' ? await newLeafKey() : null;
    return new LeafIssuer(ca, Object.freeze([...upstreamTrust]), sharedKey, options);
  }

  /**
   * Rejects with LeafRefusedError for a host the CA may not vouch for (its --permit constraints:
   * every client would refuse that leaf) or that is no host name or address, and with
   * InspectCaError once the CA has expired; otherwise resolves.
   */
  async contextFor(host: string): Promise<SecureContext> {
    const name = leafNameOf(host);
    if (name === null) throw new LeafRefusedError(`cannot mint a leaf for ${JSON.stringify(host.slice(0, 300))}: not a host name or IP address`, 'inspect_invalid_host');
    if (!permitsHost(this.ca.constraints, name.type === 'ip' ? host : name.value)) {
      const allowed = this.ca.constraints === null ? '' : describeConstraints(this.ca.constraints);
      throw new LeafRefusedError(`the inspection CA may not vouch for ${name.value}: its name constraints permit ${allowed}`, 'inspect_host_not_permitted');
    }
    const now = this.clock();
    const { value, outcome } = await this.cache.get(name.value, now.getTime(), () => this.mint(name, now));
    if (outcome !== 'minted') this.options.observer?.hit(outcome);
    return value;
  }

  stats(): LeafStats {
    return { cached: this.cache.size };
  }

  private async mint(name: LeafName, now: Date): Promise<Minted<SecureContext>> {
    if (now.getTime() >= this.ca.notAfter.getTime()) {
      throw new InspectCaError(`the inspection CA expired on ${this.ca.notAfter.toISOString()}: no leaf can be minted; create a new one (tollgate ca init) and restart`);
    }
    const started = process.hrtime.bigint();
    const key = this.sharedKey ?? (await newLeafKey());
    const leaf = await mintLeaf(this.ca, name, key, now);
    // The chain after the leaf: clients that trust the CA need only the leaf, but one given an
    // intermediate CA in ca.pem needs the rest to reach its root.
    const context = createSecureContext({ key: key.privatePem, cert: leaf.certPem + this.ca.chainPem, minVersion: 'TLSv1.2' });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.options.observer?.minted(seconds);
    // A leaf cut short by its CA's expiry is renewed halfway through its life instead.
    const lifeMs = leaf.notAfter.getTime() - now.getTime();
    return { value: context, renewAtMs: leaf.notAfter.getTime() - Math.min(LEAF_RENEW_BEFORE_MS, lifeMs / 2) };
  }
}

/** `serve --inspect-ca DIR [--inspect-trust FILE]`: the CA and trust checked, the issuer ready. */
export async function loadInspection(caDir: string, trustFile: string | null, options: LeafIssuerOptions = {}): Promise<LeafIssuer> {
  const ca = await loadInspectCa(caDir, options.clock?.());
  const trust = trustFile === null ? [] : loadUpstreamTrust(trustFile);
  return LeafIssuer.create(ca, trust, options);
}
