import type { CompiledRule, Policy } from './compiled';
import { matchRule, prepareRequest, type PreparedRequest } from './match-rule';
import { DEFAULT_RULE, defaultReason, matchedRuleReason } from './reasons';
import type { Decision, Mode, RequestFacts } from './types';

/**
 * Pure: (Policy, request facts) -> Decision, a plain value the proxy acts on and the audit
 * records verbatim, so replay and explain can re-decide a record exactly. Order (SPEC §2):
 * identify the client groups, then the first matching rule in file-name and file order, else
 * settings.default. Report mode lets a policy denial through with wouldDeny set; a rule's own
 * `mode` wins over settings.mode in both directions, so one rule can be trialled in report
 * mode under an enforcing policy, and one rule can be enforced under a reporting policy.
 */
export function decide(policy: Policy, facts: RequestFacts): Decision {
  const req = prepareRequest(policy, facts);
  return decisionFor(policy, req, firstMatch(policy, req));
}

export function firstMatch(policy: Policy, req: PreparedRequest): CompiledRule | null {
  for (const rule of policy.rules) {
    if (matchRule(rule, req) === null) return rule;
  }
  return null;
}

/** The Decision once the deciding rule is known (null: the default). */
export function decisionFor(policy: Policy, req: PreparedRequest, rule: CompiledRule | null): Decision {
  const clients = [...req.clients];
  if (rule === null) {
    const { default: action, mode, source } = policy.settings;
    const reported = isReported(action, mode);
    const reason = defaultReason(action, reported);
    const upstream = policy.settings.upstream;
    return { action: reported ? 'allow' : action, rule: DEFAULT_RULE, ruleSource: source, reason, wouldDeny: reported, clients, upstream, tls: policy.settings.tls, mode };
  }
  const mode = rule.mode ?? policy.settings.mode;
  const reported = isReported(rule.action, mode);
  const reason = matchedRuleReason(rule.name, rule.action, reported);
  // A rule's `via` wins over settings.upstream; `via: direct` (null) bypasses the parent.
  const upstream = rule.via === undefined ? policy.settings.upstream : rule.via;
  return { action: reported ? 'allow' : rule.action, rule: rule.name, ruleSource: rule.source, reason, wouldDeny: reported, clients, upstream, tls: rule.tls ?? policy.settings.tls, mode };
}

function isReported(action: Decision['action'], mode: Mode): boolean {
  return action === 'deny' && mode === 'report';
}

