import type { Policy } from './compiled';
import { formatProblem, loadPolicy } from './load';
import type { Problem } from './problems';

/** `tollgate policy check`: problems fail the check; warnings are printed and do not. */
export interface CheckResult {
  ok: boolean;
  lines: string[];
}

/** Rules expiring this soon are worth a warning: someone should renew or delete them. */
export const EXPIRY_WARNING_DAYS = 14;
const DAY_MS = 24 * 60 * 60 * 1000;

function warningLine(source: string, message: string): string {
  return `${source}: warning: ${message}`;
}

function formatWarning(p: Problem): string {
  return formatProblem({ ...p, message: `warning: ${p.message}` });
}

function expiryWarnings(policy: Policy, now: Date): string[] {
  const lines: string[] = [];
  for (const rule of policy.rules) {
    if (rule.expiresAt === null) continue;
    const daysLeft = Math.ceil((rule.expiresAt - now.getTime()) / DAY_MS);
    if (daysLeft <= 0) {
      lines.push(warningLine(rule.source, `rule "${rule.name}" expired on ${rule.expires ?? '?'} and no longer matches`));
    } else if (daysLeft <= EXPIRY_WARNING_DAYS) {
      const when = daysLeft === 1 ? 'at the end of today (UTC)' : `in ${daysLeft} days`;
      lines.push(warningLine(rule.source, `rule "${rule.name}" expires on ${rule.expires ?? '?'} (${when})`));
    }
  }
  return lines;
}

function summary(policy: Policy): string {
  const files = `${policy.files.length} file${policy.files.length === 1 ? '' : 's'}`;
  const rules = `${policy.rules.length} rule${policy.rules.length === 1 ? '' : 's'}`;
  return `ok: ${files}, ${rules}, default ${policy.settings.default}, mode ${policy.settings.mode} (${policy.version})`;
}

/** `now` is a parameter so expiry warnings are testable (STYLE habit 5). */
export function checkPolicies(dir: string, now: Date = new Date()): CheckResult {
  const result = loadPolicy(dir);
  if (!result.ok) {
    const count = `${result.problems.length} problem${result.problems.length === 1 ? '' : 's'}`;
    return { ok: false, lines: [...result.problems.map(formatProblem), `invalid: ${count}`] };
  }
  const warnings = [...result.warnings.map(formatWarning), ...expiryWarnings(result.policy, now)];
  return { ok: true, lines: [...warnings, summary(result.policy)] };
}
