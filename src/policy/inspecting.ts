import type { Policy } from './compiled';

/**
 * What in a policy asks for TLS inspection (SPEC §6): the rules that inspect, and `settings`
 * when the default decision allows with settings.tls: inspect. Empty: nothing is inspected, and a
 * proxy without --inspect-ca loses nothing; otherwise serve warns that those tunnels are refused.
 */
export function inspectingRules(policy: Policy): string[] {
  const names = policy.rules.filter((rule) => rule.inspects).map((rule) => rule.name);
  const { settings } = policy;
  if (settings.default === 'allow' && settings.tls === 'inspect') names.push('(default)');
  return names;
}
