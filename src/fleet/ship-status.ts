/** What the shipper reports (/metrics, /readyz detail `ship`, the UI's banner). */
export interface ShipStatus {
  /** Log entries (opens, completions, finished records) not yet in PostgreSQL. */
  backlogEntries: number;
  /** Age of the oldest entry not yet shipped, in seconds; 0 when none. */
  oldestSeconds: number;
  /** True when the count stopped at its cap (a lower bound). */
  backlogCapped: boolean;
  /** Entries shipped, and batches that failed, since this shipper started. */
  shippedEntries: number;
  failures: number;
  /** Why the last attempt failed (password removed); null once one succeeds. */
  lastError: string | null;
  /** ISO time of the last batch committed (or of the last "nothing to ship"); null before. */
  lastSuccessAt: string | null;
}

export const EMPTY_SHIP_STATUS: ShipStatus = Object.freeze({
  backlogEntries: 0, oldestSeconds: 0, backlogCapped: false, shippedEntries: 0, failures: 0, lastError: null, lastSuccessAt: null,
});
