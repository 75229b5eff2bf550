import type { Policy } from './compiled';
import { describeExpiry, expiringRules } from './expiry';
import { formatProblem, loadPolicy } from './load';
import type { Problem } from './problems';

export { EXPIRY_WARNING_DAYS } from './expiry';

/** `tollgate policy check`: problems fail the check; warnings are printed and do not. */
export interface CheckResult {
  ok: boolean;
  lines: string[];
}

function formatWarning(p: Problem): string {
  return formatProblem({ ...p, message: `warning: ${p.message}` });
}

function expiryWarnings(policy: Policy, now: Date): string[] {
  return expiringRules(policy, now).map((e) => `${e.source}: warning: rule "${e.rule}" ${describeExpiry(e)}`);
}

function summary(policy: Policy): string {
  const files = `${policy.files.length} file${policy.files.length === 1 ? '' : 's'}`;
  const rules = `${policy.rules.length} rule${policy.rules.length === 1 ? '' : 's'}`;
  return `ok: ${files}, ${rules}, default ${policy.settings.default}, mode ${policy.settings.mode} (${policy.version})`;
}

/** `now` is a parameter, not read from the clock, so tests can pin expiry warnings to a date. */
export function checkPolicies(dir: string, now: Date = new Date()): CheckResult {
  const result = loadPolicy(dir);
  if (!result.ok) {
    const count = `${result.problems.length} problem${result.problems.length === 1 ? '' : 's'}`;
    return { ok: false, lines: [...result.problems.map(formatProblem), `invalid: ${count}`] };
  }
  const warnings = [...result.warnings.map(formatWarning), ...expiryWarnings(result.policy, now)];
  return { ok: true, lines: [...warnings, summary(result.policy)] };
}
