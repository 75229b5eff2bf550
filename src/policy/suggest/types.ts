import type { HostKind } from '../../request/target-types';
import type { TimeWindow } from '../replay/window';

/**
 * `tollgate policy suggest` (SPEC §6 "Adoption"): allow rules for the recorded traffic that the
 * current policy only reports (would_deny) or allows by default. The summary is what the CLI
 * prints beside the YAML and what an admin route returns with it (snake_case, like the API).
 */

/** One rule per client group and destination family, or one per family for every client. */
export type SuggestBy = 'client-group' | 'none';
export const SUGGEST_BY: readonly SuggestBy[] = ['client-group', 'none'];

export interface SuggestOptions {
  window: TimeWindow;
  /** Existing rules' expiry is judged at this instant, and the header says when it was made. */
  now: Date;
  /** A destination (per group) seen fewer times than this is left out. */
  minRequests: number;
  /** null: `client-group` where the policy defines client groups, else `none`. */
  by: SuggestBy | null;
  /** `methods` and `paths` for plain-HTTP traffic. */
  withPaths: boolean;
}

/** Why a recorded destination is not in the suggestion. */
export type LeftOutReason =
  | 'explicit_deny'
  | 'guard'
  | 'sni'
  | 'already_allowed'
  | 'default_deny'
  | 'below_min_requests'
  | 'invalid_host';

export const LEFT_OUT_REASONS: readonly LeftOutReason[] = [
  'explicit_deny', 'guard', 'sni', 'already_allowed', 'default_deny', 'below_min_requests', 'invalid_host',
];

export interface LeftOutDestination {
  /** host:port, IPv6 in brackets. */
  destination: string;
  reason: LeftOutReason;
  requests: number;
  /** The rules that decide it under the current policy (`(guard)`, `(sni)`, `(default)` or names). */
  rules: string[];
}

export interface SuggestSummary {
  window: { since: string; until: string };
  policy: { version: string; rules: number };
  by: SuggestBy;
  min_requests: number;
  with_paths: boolean;
  /**
   * Records in the window; `considered`: decided again under the current policy; `inside_tunnels`:
   * requests of kind `https` read inside inspected tunnels, covered by their tunnel's rule.
   */
  records: { in_window: number; considered: number; inside_tunnels: number; skipped_malformed: number; skipped_undecided: number };
  rules: number;
  /** Destinations (host:port per group) and requests the suggested rules are written for. */
  suggested: { destinations: number; requests: number };
  /** Suggested rules whose hosts include an IP literal (flagged for review in the YAML). */
  ip_literal_rules: string[];
  left_out: LeftOutDestination[];
}

/** A destination the suggestion is written for: one host:port, one group, what was seen. */
export interface Observed {
  /** The client group the rule is for, or null (every client). */
  group: string | null;
  host: string;
  hostKind: HostKind;
  port: number;
  /** Plain-HTTP traffic with --with-paths: its methods and paths go in the rule. */
  http: boolean;
  requests: number;
  clientIps: Set<string>;
  lastSeenMs: number;
  methods: Set<string>;
  /** Normalised request paths (path-match.ts). */
  paths: Set<string>;
}

export interface SuggestResult {
  yaml: string;
  summary: SuggestSummary;
}
