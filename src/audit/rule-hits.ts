import type Database from 'better-sqlite3';
import { statement } from './statement-cache';

export interface RuleHits {
  hits: number;
  /** Start of the newest record the rule decided, ISO-8601 UTC; null with no hits. */
  last_hit: string | null;
}

/**
 * Records each rule decided since `sinceMs`, by rule name (names are unique in a policy and are
 * what every record carries). Each count is a range of the (rule, started_at_ms) index of
 * migration 002, so the table itself is never read.
 */
export function ruleHits(db: Database.Database, names: readonly string[], sinceMs: number): Map<string, RuleHits> {
  const count = statement(
    db,
    `SELECT count(*) AS hits, max(started_at_ms) AS last FROM requests INDEXED BY requests_rule_started
      WHERE rule = @rule AND started_at_ms >= @since`,
  );
  const hits = new Map<string, RuleHits>();
  for (const rule of new Set(names)) {
    const row = count.get({ rule, since: sinceMs }) as { hits: number; last: number | null };
    hits.set(rule, { hits: row.hits, last_hit: row.last === null ? null : new Date(row.last).toISOString() });
  }
  return hits;
}
