import type { Policy } from '../compiled';
import { describeExpiry, EXPIRY_WARNING_DAYS, expiringRules, type ExpiringRule } from '../expiry';
import type { RecordedTraffic } from './recorded-traffic';
import type { TimeWindow } from './window';

/**
 * `tollgate policy unused`: rules of the current policy that decided no recorded request in the
 * window (candidates for deletion), and rules past or near their `expires` date. A hit is a
 * record whose `rule` is the rule's name, whatever policy version recorded it: a renamed rule
 * starts again from zero.
 */
export interface UnusedRule {
  rule: string;
  source: string;
  action: 'allow' | 'deny';
  /** ISO-8601 UTC of its newest record before the window, or null: it never decided a request. */
  last_hit: string | null;
}

export interface UnusedReport {
  policy: { dir: string; version: string; rules: number };
  db: string;
  window: { since: string; until: string; covered_since: string | null };
  records_in_window: number;
  rules: Array<{ rule: string; source: string; hits: number; last_hit: string | null }>;
  unused: UnusedRule[];
  expiring: ExpiringRule[];
  expiring_within_days: number;
  notes: string[];
}

export async function unusedRules(input: { policy: Policy; policiesDir: string; traffic: RecordedTraffic; window: TimeWindow; now: Date }): Promise<UnusedReport> {
  const { policy, window, traffic } = input;
  const { byRule: hits, inWindow, oldestMs: oldest } = await traffic.snapshot(() => traffic.ruleHits(policy.rules.map((r) => r.name), window));
  const iso = (ms: number | null | undefined): string | null => (ms === null || ms === undefined ? null : new Date(ms).toISOString());
  const rules = policy.rules.map((r) => ({ rule: r.name, source: r.source, hits: hits.get(r.name)?.hits ?? 0, last_hit: iso(hits.get(r.name)?.lastMs) }));
  const unused = policy.rules
    .filter((r) => (hits.get(r.name)?.hits ?? 0) === 0)
    .map((r) => ({ rule: r.name, source: r.source, action: r.action, last_hit: iso(hits.get(r.name)?.lastMs) }));
  const notes: string[] = [];
  if (oldest === null || oldest > window.sinceMs) {
    notes.push(`The database holds records only since ${iso(oldest) ?? '(no records)'}: a rule unused here may have been used before that.`);
  }
  return {
    policy: { dir: input.policiesDir, version: policy.version, rules: policy.rules.length },
    db: traffic.label,
    window: { since: new Date(window.sinceMs).toISOString(), until: new Date(window.untilMs).toISOString(), covered_since: iso(oldest) },
    records_in_window: inWindow,
    rules,
    unused,
    expiring: expiringRules(policy, input.now),
    expiring_within_days: EXPIRY_WARNING_DAYS,
    notes,
  };
}

export function formatUnusedText(report: UnusedReport): string {
  const lines = [
    `tollgate policy unused: ${report.policy.dir} (${report.policy.version}) against ${report.db}`,
    `window: ${report.window.since} to ${report.window.until}, ${report.records_in_window.toLocaleString('en-US')} records`,
    '',
    `rules with no hits in the window: ${report.unused.length === 0 ? 'none' : `${report.unused.length} of ${report.policy.rules}`}`,
    ...report.unused.map((u) => `  ${u.rule} (${u.source}, ${u.action}): ${u.last_hit === null ? 'never decided a recorded request' : `last hit ${u.last_hit}`}`),
    `rules expired or expiring within ${report.expiring_within_days} days: ${report.expiring.length === 0 ? 'none' : report.expiring.length}`,
    ...report.expiring.map((e) => `  ${e.rule} (${e.source}): ${describeExpiry(e)}`),
  ];
  if (report.notes.length > 0) lines.push('', ...report.notes.map((n) => `note: ${n}`));
  return `${lines.join('\n')}\n`;
}
