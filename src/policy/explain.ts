import type { CompiledRule, Policy } from './compiled';
import { decisionFor } from './decide';
import { matchRule, prepareRequest, type PreparedRequest } from './match-rule';
import { MATCHED_PHRASE, MISMATCH_PHRASES, type Mismatch } from './reasons';
import type { PortSpec } from './schema';
import type { Decision, RequestFacts } from './types';

/** One rule as `policy test` saw it: in order, up to and including the one that decided. */
export interface ConsideredRule {
  rule: string;
  source: string;
  matched: boolean;
  why: string;
}

export interface Explanation {
  decision: Decision;
  considered: ConsideredRule[];
}

function list(items: readonly string[]): string {
  return `[${items.join(', ')}]`;
}

export function formatPorts(ports: PortSpec): string {
  if (ports === 'any') return 'any';
  return list(ports.map(([low, high]) => (low === high ? String(low) : `${low}-${high}`)));
}

function mismatchDetail(rule: CompiledRule, req: PreparedRequest, mismatch: Mismatch): string {
  switch (mismatch) {
    case 'expired':
      return `on ${rule.expires ?? '?'}`;
    case 'client':
      return `request is in ${list(req.clients)}, rule wants ${list(rule.clients ?? [])}`;
    case 'host':
      return `"${req.host.name ?? req.facts.host}" vs ${list(rule.hostPatterns)}`;
    case 'port':
      return `${req.facts.port} vs ${formatPorts(rule.ports)}`;
    case 'connect':
      return 'CONNECT';
    case 'method':
      return `${req.method} vs ${list([...(rule.methods ?? [])])}`;
    case 'path':
      return `"${req.path ?? ''}" vs ${list(rule.pathPatterns ?? [])}`;
  }
}

/** decide(), plus why each rule before the deciding one did not match. Same matching code. */
export function explainDecision(policy: Policy, facts: RequestFacts): Explanation {
  const req = prepareRequest(policy, facts);
  const considered: ConsideredRule[] = [];
  for (const rule of policy.rules) {
    const mismatch = matchRule(rule, req);
    const why = mismatch === null ? MATCHED_PHRASE : `${MISMATCH_PHRASES[mismatch]}: ${mismatchDetail(rule, req, mismatch)}`;
    considered.push({ rule: rule.name, source: rule.source, matched: mismatch === null, why });
    if (mismatch === null) return { decision: decisionFor(policy, req, rule), considered };
  }
  return { decision: decisionFor(policy, req, null), considered };
}
