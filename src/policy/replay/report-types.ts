/**
 * The report of `tollgate policy replay`, as `--format json` prints it (snake_case, like the
 * audit API). The text and markdown formats are renderings of this one value.
 */

/** What a request effectively got: through, refused, or through with would_deny (report mode). */
export type Outcome = 'allow' | 'deny' | 'would_deny';

/** The four ways an outcome can change, each a section of the report. */
export const CHANGE_KINDS = ['newly_denied', 'newly_allowed', 'newly_would_deny', 'no_longer_would_deny'] as const;
export type ChangeKind = (typeof CHANGE_KINDS)[number];

/** allow|would_deny -> deny; deny -> allow|would_deny; allow -> would_deny; would_deny -> allow. */
export function changeKind(recorded: Outcome, proposed: Outcome): ChangeKind | null {
  if (recorded === proposed) return null;
  if (proposed === 'deny') return 'newly_denied';
  if (recorded === 'deny') return 'newly_allowed';
  return proposed === 'would_deny' ? 'newly_would_deny' : 'no_longer_would_deny';
}

/** One destination (host:port) whose outcome changes for some of its recorded requests. */
export interface DestinationChange {
  /** host:port, IPv6 in brackets. */
  destination: string;
  host: string;
  port: number;
  /** Recorded requests to it whose outcome changes this way. */
  requests: number;
  /** Client groups of those requests, as the proposed policy identifies them. */
  client_groups: string[];
  /** Client source addresses, sorted; at most MAX_LISTED_CLIENT_IPS of them. */
  client_ips: string[];
  client_ip_count: number;
  /** ISO-8601 UTC: the newest of those requests. */
  last_seen: string;
  recorded: { outcomes: Outcome[]; rules: string[] };
  proposed: { outcomes: Outcome[]; rules: string[] };
}

export const MAX_LISTED_CLIENT_IPS = 100;

/** A rule (or `(default)`, `(guard)`) that would decide a different number of requests. */
export interface RuleHitChange {
  rule: string;
  /** FILE:LINE in the proposed policy; null for a rule it no longer has, and for (default)/(guard). */
  source: string | null;
  recorded: number;
  proposed: number;
  change: number;
}

/**
 * A rule of the proposed policy that would decide none of the recorded requests: expired, no
 * request matches it, every request it matches is decided by an earlier rule (shadowed), or
 * every request it allows is refused by the destination guard (guarded).
 */
export interface NeverMatchingRule {
  rule: string;
  source: string;
  action: 'allow' | 'deny';
  why: 'expired' | 'no_match' | 'shadowed' | 'guarded';
  /** For `shadowed`: a rule before it that decided a request it matches. */
  shadowed_by: string | null;
  /** Recorded requests it matches but does not decide (0 for expired and no_match). */
  matched_requests: number;
  expires: string | null;
}

export interface ChangeTotals {
  destinations: number;
  requests: number;
}

export interface ReplayReport {
  policy: { dir: string; version: string; content_hash: string; files: string[]; rules: number };
  db: string;
  window: { since: string; until: string; first_record: string | null; last_record: string | null; covered_since: string | null };
  /**
   * Records in the window; replayed or skipped; `shapes`: distinct recorded request facts (one
   * SQL group each); `decisions`: distinct decisions the proposed policy had to make for them.
   */
  records: { in_window: number; replayed: number; skipped_malformed: number; skipped_undecided: number; shapes: number; decisions: number };
  recorded_policy_versions: Array<{ version: string | null; requests: number }>;
  summary: Record<ChangeKind, ChangeTotals> & { unchanged_requests: number; rule_hit_changes: number; never_matching_rules: number };
  newly_denied: DestinationChange[];
  newly_allowed: DestinationChange[];
  newly_would_deny: DestinationChange[];
  no_longer_would_deny: DestinationChange[];
  rule_hits: RuleHitChange[];
  never_matching: NeverMatchingRule[];
  notes: string[];
  elapsed_ms: number;
}
