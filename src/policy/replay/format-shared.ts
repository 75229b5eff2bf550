import type { ChangeKind, DestinationChange, NeverMatchingRule, ReplayReport } from './report-types';

/** Shared wording of the text and markdown reports. */

export const SECTION_TITLES: Readonly<Record<ChangeKind, string>> = {
  newly_denied: 'Newly denied',
  newly_allowed: 'Newly allowed',
  newly_would_deny: 'Newly would_deny (report mode: still let through)',
  no_longer_would_deny: 'No longer would_deny',
};

export const count = (n: number): string => n.toLocaleString('en-US');

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${count(n)} ${n === 1 ? one : many}`;
}

/** `2026-01-07 12:00 UTC` */
export function shortTime(iso: string | null): string {
  return iso === null ? '-' : `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}

/** At most `shown` addresses, then how many more. */
export function clientIps(row: DestinationChange, shown = 3): string {
  const listed = row.client_ips.slice(0, shown).join(', ');
  const more = row.client_ip_count - Math.min(shown, row.client_ips.length);
  return more > 0 ? `${listed} (+${count(more)} more)` : listed;
}

export function ruleChange(row: DestinationChange, quote: (s: string) => string = (s) => s): string {
  const side = (rules: string[]): string => rules.map(quote).join(', ');
  return `${side(row.recorded.rules)} → ${side(row.proposed.rules)}`;
}

export function outcomeChange(row: DestinationChange): string {
  return `${row.recorded.outcomes.join('/')} → ${row.proposed.outcomes.join('/')}`;
}

export function neverMatchingWhy(rule: NeverMatchingRule): string {
  switch (rule.why) {
    case 'expired':
      return `expired on ${rule.expires ?? '?'}`;
    case 'shadowed':
      return `every request it matches (${count(rule.matched_requests)}) is decided by an earlier rule, e.g. ${rule.shadowed_by ?? '?'}`;
    case 'guarded':
      return `the destination guard refuses every request it allows (${count(rule.matched_requests)})`;
    case 'no_match':
      return 'no recorded request matches it';
  }
}

/** One line: what changes, for the top of either format. */
export function summaryLine(report: ReplayReport): string {
  const s = report.summary;
  const part = (label: string, t: { destinations: number; requests: number }): string =>
    `${label}: ${plural(t.destinations, 'destination')} (${plural(t.requests, 'request')})`;
  return [
    part('newly denied', s.newly_denied),
    part('newly allowed', s.newly_allowed),
    `report-mode changes: ${plural(s.newly_would_deny.destinations + s.no_longer_would_deny.destinations, 'destination')}`,
    `rule hit changes: ${count(s.rule_hit_changes)}`,
    `rules that would never match: ${count(s.never_matching_rules)}`,
  ].join(' · ');
}

/** What was replayed, against what. */
export function scopeLine(report: ReplayReport, quote: (s: string) => string = (s) => s): string {
  const r = report.records;
  const skipped = r.skipped_malformed + r.skipped_undecided > 0
    ? `; skipped ${count(r.skipped_malformed)} with a malformed target and ${count(r.skipped_undecided)} the policy never decided`
    : '';
  return (
    `Replayed ${plural(r.replayed, 'recorded request')} (${plural(r.shapes, 'distinct shape')}, ${plural(r.decisions, 'decision')}) from ` +
    `${shortTime(report.window.since)} to ${shortTime(report.window.until)} against ${quote(report.policy.version)} ` +
    `(${quote(report.policy.dir)}, ${plural(report.policy.rules, 'rule')})${skipped}.`
  );
}
