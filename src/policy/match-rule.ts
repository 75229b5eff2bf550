import type { CompiledRule, Policy } from './compiled';
import { hostMatches, viewHost, type HostView } from './host-match';
import { parseLiteral, rangeContains } from './ip-range';
import { normalizeRequestPath, pathMatches } from './path-match';
import type { Mismatch } from './reasons';
import type { RequestFacts } from './types';

/**
 * The one place a rule is matched against a request, shared by decide() and explainDecision()
 * so that what `policy test` explains is exactly what the proxy does. A decision depends on the
 * client's address only through `clients`: `policy replay` relies on that to decide once for
 * all addresses in the same groups (replay/decide-shape.ts).
 */
export interface PreparedRequest {
  facts: RequestFacts;
  host: HostView;
  /** Normalised (path-match.ts); null for CONNECT. */
  path: string | null;
  method: string;
  /** Client groups the request belongs to, in policy order. */
  clients: readonly string[];
  nowMs: number;
}

/** A request is in a group by its source address, by its authenticated user, or both. */
export function identifyClients(policy: Policy, sourceIp: string, user: string | null = null): string[] {
  if (policy.clients.length === 0) return [];
  const source = parseLiteral(sourceIp);
  return policy.clients
    .filter((c) => (user !== null && c.users.has(user)) || (source !== null && c.sources.some((range) => rangeContains(range, source))))
    .map((c) => c.name);
}

/** Work done once per request rather than once per rule. */
export function prepareRequest(policy: Policy, facts: RequestFacts): PreparedRequest {
  return {
    facts,
    host: viewHost(facts.host, facts.hostKind),
    path: facts.kind === 'connect' || facts.path === null ? null : normalizeRequestPath(facts.path),
    method: facts.method.toUpperCase(),
    clients: identifyClients(policy, facts.sourceIp, facts.user),
    nowMs: facts.now.getTime(),
  };
}

function portMatches(rule: CompiledRule, port: number): boolean {
  return rule.ports === 'any' || rule.ports.some(([low, high]) => port >= low && port <= high);
}

/**
 * A rule's methods and paths never match a CONNECT: the tunnel's contents are opaque. A rule
 * that inspects matches the CONNECT without them, and they apply to each request inside.
 */
function httpPartMismatch(rule: CompiledRule, req: PreparedRequest): Mismatch | null {
  if (rule.methods === null && rule.paths === null) return null;
  if (req.facts.kind === 'connect') return rule.inspects ? null : 'connect';
  if (rule.methods !== null && !rule.methods.has(req.method)) return 'method';
  if (rule.paths !== null && (req.path === null || !pathMatches(rule.paths, req.path))) return 'path';
  return null;
}

/** null when the rule matches; otherwise the first part that did not. */
export function matchRule(rule: CompiledRule, req: PreparedRequest): Mismatch | null {
  if (rule.expiresAt !== null && req.nowMs >= rule.expiresAt) return 'expired';
  if (rule.clients !== null && !rule.clients.some((c) => req.clients.includes(c))) return 'client';
  if (!hostMatches(rule.hosts, req.host)) return 'host';
  if (!portMatches(rule, req.facts.port)) return 'port';
  return httpPartMismatch(rule, req);
}
