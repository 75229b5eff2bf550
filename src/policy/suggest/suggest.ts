import type { Policy } from '../compiled';
import type { ShapeSource } from '../replay/recorded-traffic';
import { buildRules } from './build-rules';
import { classifyTraffic } from './classify';
import { emitYaml } from './emit-yaml';
import { LEFT_OUT_REASONS, type SuggestBy, type SuggestOptions, type SuggestResult, type SuggestSummary } from './types';

export type { SuggestBy, SuggestOptions, SuggestResult, SuggestSummary } from './types';

/**
 * `client-group` asked of a policy with no client groups: every rule would be `ungrouped-…`, which
 * is `none` under another name. The CLI (exit 2) and the admin route (400) say so in their own terms.
 */
export class NoClientGroupsError extends Error {
  override readonly name = 'NoClientGroupsError';
  constructor() {
    super('by client-group: the policy defines no client groups; use by none');
  }
}

/** --by as given, else `client-group` where the policy defines client groups; throws NoClientGroupsError. */
export function effectiveBy(policy: Policy, by: SuggestBy | null): SuggestBy {
  if (by === 'client-group' && policy.clients.length === 0) throw new NoClientGroupsError();
  return by ?? (policy.clients.length > 0 ? 'client-group' : 'none');
}

/**
 * Allow rules (one YAML policy file) for the window's recorded traffic that `policy` only
 * reports or allows by default, and a summary of what was suggested and what was left out.
 * Reads the traffic in one snapshot and nothing else; the caller opens and closes it. Throws
 * NoClientGroupsError (effectiveBy) before reading anything.
 */
export async function suggestPolicy(traffic: ShapeSource, policy: Policy, options: SuggestOptions): Promise<SuggestResult> {
  const by = effectiveBy(policy, options.by);
  const classified = await traffic.snapshot(() => classifyTraffic(traffic, policy, options, by));
  const rules = buildRules(
    classified.observed,
    { minRequests: options.minRequests, byGroup: by === 'client-group', groupOrder: policy.clients.map((c) => c.name), taken: new Set(policy.rules.map((r) => r.name)) },
    classified.leftOut,
  );
  const summary: SuggestSummary = {
    window: { since: new Date(options.window.sinceMs).toISOString(), until: new Date(options.window.untilMs).toISOString() },
    policy: { version: policy.version, rules: policy.rules.length },
    by,
    min_requests: options.minRequests,
    with_paths: options.withPaths,
    records: classified.records,
    rules: rules.length,
    suggested: { destinations: rules.reduce((sum, r) => sum + r.destinations, 0), requests: rules.reduce((sum, r) => sum + r.requests, 0) },
    ip_literal_rules: rules.filter((r) => r.ipLiteral).map((r) => r.name),
    left_out: classified.leftOut.list(LEFT_OUT_REASONS),
  };
  return { yaml: emitYaml(rules, summary, traffic.label, options.now), summary };
}
