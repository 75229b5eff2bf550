import type { Policy } from './compiled';

/** Rules expiring this soon are worth a warning: someone should renew or delete them. */
export const EXPIRY_WARNING_DAYS = 14;
const DAY_MS = 24 * 60 * 60 * 1000;

/** A rule past its `expires` date, or within EXPIRY_WARNING_DAYS of it. */
export interface ExpiringRule {
  rule: string;
  source: string;
  /** YYYY-MM-DD as written; the rule matches through the end of that day (UTC). */
  expires: string;
  /** Whole days until it stops matching, rounded up; 0 or less once it has. */
  days_left: number;
  expired: boolean;
}

/** Shared by `policy check` (warnings) and `policy unused` (a list). */
export function expiringRules(policy: Policy, now: Date, withinDays = EXPIRY_WARNING_DAYS): ExpiringRule[] {
  const result: ExpiringRule[] = [];
  for (const rule of policy.rules) {
    if (rule.expiresAt === null || rule.expires === null) continue;
    const daysLeft = Math.ceil((rule.expiresAt - now.getTime()) / DAY_MS);
    if (daysLeft > withinDays) continue;
    result.push({ rule: rule.name, source: rule.source, expires: rule.expires, days_left: daysLeft, expired: daysLeft <= 0 });
  }
  return result;
}

/** `expired on 2026-01-10 and no longer matches`, `expires on 2026-01-20 (in 5 days)` */
export function describeExpiry(entry: ExpiringRule): string {
  if (entry.expired) return `expired on ${entry.expires} and no longer matches`;
  const when = entry.days_left === 1 ? 'at the end of today (UTC)' : `in ${entry.days_left} days`;
  return `expires on ${entry.expires} (${when})`;
}
