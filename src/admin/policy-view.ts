import type { RuleHits } from '../audit/rule-hits';
import type { CompiledRule, Policy } from '../policy/load';
import type { PortSpec } from '../policy/schema';
import type { Action, Mode } from '../policy/types';
import type { ReloadResult } from '../policy/watch';

/** What the admin app is given to show the policy: the one in force and the last reload. */
export interface PolicySnapshot {
  policy: Policy;
  lastReload: ReloadResult;
}

export interface RuleView extends RuleHits {
  name: string;
  action: Action;
  /** FILE:LINE of the rule. */
  source: string;
  /** The rule's own mode; null when it follows settings.mode. */
  mode: Mode | null;
  effective_mode: Mode;
  clients: string[] | null;
  hosts: string[];
  ports: 'any' | string[];
  methods: string[] | null;
  paths: string[] | null;
  expires: string | null;
  expired: boolean;
  /** No record in the window was decided by this rule: a candidate for removal or a typo. */
  unused: boolean;
}

/** Built-in rule names that decide records too. */
export const FALLBACK_RULES = ['(default)', '(guard)', '(sni)'] as const;

function portsView(ports: PortSpec): 'any' | string[] {
  return ports === 'any' ? 'any' : ports.map(([low, high]) => (low === high ? String(low) : `${low}-${high}`));
}

function ruleView(rule: CompiledRule, policy: Policy, hits: RuleHits, nowMs: number): RuleView {
  return {
    name: rule.name,
    action: rule.action,
    source: rule.source,
    mode: rule.mode,
    effective_mode: rule.mode ?? policy.settings.mode,
    clients: rule.clients === null ? null : [...rule.clients],
    hosts: [...rule.hostPatterns],
    ports: portsView(rule.ports),
    methods: rule.methods === null ? null : [...rule.methods],
    paths: rule.pathPatterns === null ? null : [...rule.pathPatterns],
    expires: rule.expires,
    expired: rule.expiresAt !== null && rule.expiresAt <= nowMs,
    hits: hits.hits,
    last_hit: hits.last_hit,
    unused: hits.hits === 0,
  };
}

const NO_HITS: RuleHits = { hits: 0, last_hit: null };

/** GET /api/policy: the policy in force, in rule order, with each rule's hits in the window. */
export function policyView(snapshot: PolicySnapshot, hits: Map<string, RuleHits>, sinceMs: number, nowMs: number) {
  const { policy, lastReload } = snapshot;
  return {
    version: policy.version,
    content_hash: policy.contentHash,
    files: [...policy.files],
    settings: { default: policy.settings.default, mode: policy.settings.mode, source: policy.settings.source },
    network: {
      allow_ranges: policy.network.allowRanges.map((r) => ({ cidr: r.cidr, source: r.source })),
      deny_ranges: policy.network.denyRanges.map((r) => ({ cidr: r.cidr, source: r.source })),
      parent_ranges: policy.network.parentRanges.map((r) => ({ cidr: r.cidr, source: r.source })),
    },
    clients: policy.clients.map((c) => ({ name: c.name, source: c.source, sources: c.sources.map((s) => s.cidr) })),
    hits_since: new Date(sinceMs).toISOString(),
    rules: policy.rules.map((rule) => ruleView(rule, policy, hits.get(rule.name) ?? NO_HITS, nowMs)),
    fallbacks: FALLBACK_RULES.map((rule) => ({ rule, ...(hits.get(rule) ?? NO_HITS) })),
    last_reload: { ok: lastReload.ok, at: lastReload.at, version: lastReload.version, problems: [...lastReload.problems] },
  };
}
