import type { CompiledRule, Policy } from '../compiled';
import { matchRule } from '../match-rule';
import type { PolicyVerdict, ProposedOutcome, ShapeOutcome } from './decide-shape';
import type { RecordedShape } from './recorded-shape';
import {
  MAX_LISTED_CLIENT_IPS, type DestinationChange, type NeverMatchingRule, type Outcome, type RuleHitChange,
} from './report-types';

/** host:port, IPv6 in brackets (as formatAuthority writes it). */
export function destinationOf(shape: Pick<RecordedShape, 'host' | 'hostKind' | 'port'>): string {
  return `${shape.hostKind === 'ipv6' ? `[${shape.host}]` : shape.host}:${shape.port}`;
}

interface DestinationAccumulator {
  host: string;
  port: number;
  requests: number;
  groups: Set<string>;
  ips: Set<string>;
  lastSeenMs: number;
  recordedOutcomes: Set<Outcome>;
  recordedRules: Set<string>;
  proposedOutcomes: Set<Outcome>;
  proposedRules: Set<string>;
}

const sorted = <T extends string>(items: Iterable<T>): T[] => [...items].sort();

/** Changed requests of one kind (e.g. newly denied), by destination. */
export class DestinationTally {
  private readonly byDestination = new Map<string, DestinationAccumulator>();

  add(shape: RecordedShape, recorded: ShapeOutcome, proposed: ProposedOutcome): void {
    const key = destinationOf(shape);
    let acc = this.byDestination.get(key);
    if (acc === undefined) {
      acc = {
        host: shape.host, port: shape.port, requests: 0, groups: new Set(), ips: new Set(), lastSeenMs: 0,
        recordedOutcomes: new Set(), recordedRules: new Set(), proposedOutcomes: new Set(), proposedRules: new Set(),
      };
      this.byDestination.set(key, acc);
    }
    acc.requests += shape.count;
    for (const group of proposed.verdict.clients) acc.groups.add(group);
    acc.ips.add(shape.clientIp);
    acc.lastSeenMs = Math.max(acc.lastSeenMs, shape.lastSeenMs);
    acc.recordedOutcomes.add(recorded.outcome);
    acc.recordedRules.add(recorded.rule);
    acc.proposedOutcomes.add(proposed.outcome);
    acc.proposedRules.add(proposed.rule);
  }

  /** Most requests first, then by destination. */
  rows(): DestinationChange[] {
    return [...this.byDestination.entries()]
      .map(([destination, acc]) => {
        const ips = [...acc.ips].sort(compareAddresses);
        return {
          destination, host: acc.host, port: acc.port, requests: acc.requests,
          client_groups: sorted(acc.groups),
          client_ips: ips.slice(0, MAX_LISTED_CLIENT_IPS),
          client_ip_count: ips.length,
          last_seen: new Date(acc.lastSeenMs).toISOString(),
          recorded: { outcomes: sorted(acc.recordedOutcomes), rules: sorted(acc.recordedRules) },
          proposed: { outcomes: sorted(acc.proposedOutcomes), rules: sorted(acc.proposedRules) },
        };
      })
      .sort((a, b) => b.requests - a.requests || (a.destination < b.destination ? -1 : 1));
  }
}

/** IPv4 before IPv6, and numerically within each, so 10.0.0.9 sorts before 10.0.0.10. */
function compareAddresses(a: string, b: string): number {
  const key = (ip: string): string =>
    ip.includes(':') ? `1${ip}` : `0${ip.split('.').map((o) => o.padStart(3, '0')).join('.')}`;
  const ka = key(a);
  const kb = key(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/**
 * Hit counts by recorded and by proposed rule, and which proposed rules match any recorded
 * request at all. Matching is worked out once per distinct decision (observe), and a rule is
 * tested only until it first matches, so the extra work is for rules that never match.
 */
export class RuleTally {
  private readonly recorded = new Map<string, number>();
  /** After the guard: what would be recorded. */
  private readonly proposed = new Map<string, number>();
  /** Before the guard: requests each rule's match decides. */
  private readonly decided = new Map<CompiledRule, number>();
  private readonly unmatched: Set<CompiledRule>;
  private readonly shadowedBy = new Map<CompiledRule, string>();
  /** Per decision, the rules other than its decider that match it (of those not yet deciding). */
  private readonly alsoMatching = new Map<PolicyVerdict, CompiledRule[]>();
  private readonly matchedRequests = new Map<CompiledRule, number>();

  constructor(private readonly policy: Policy) {
    this.unmatched = new Set(policy.rules);
  }

  /** Once per distinct decision, before add() sees it. */
  observe(verdict: PolicyVerdict): void {
    const also: CompiledRule[] = [];
    for (const rule of this.unmatched) {
      if (rule === verdict.decider) {
        this.unmatched.delete(rule);
      } else if (matchRule(rule, verdict.req) === null) {
        this.unmatched.delete(rule);
        this.shadowedBy.set(rule, verdict.rule);
      }
    }
    for (const rule of this.shadowedBy.keys()) {
      if (rule !== verdict.decider && matchRule(rule, verdict.req) === null) also.push(rule);
    }
    this.alsoMatching.set(verdict, also);
  }

  add(shape: RecordedShape, recorded: ShapeOutcome, proposed: ProposedOutcome): void {
    const { count } = shape;
    this.recorded.set(recorded.rule, (this.recorded.get(recorded.rule) ?? 0) + count);
    this.proposed.set(proposed.rule, (this.proposed.get(proposed.rule) ?? 0) + count);
    const { decider } = proposed.verdict;
    if (decider !== null) this.decided.set(decider, (this.decided.get(decider) ?? 0) + count);
    for (const rule of this.alsoMatching.get(proposed.verdict) ?? []) {
      this.matchedRequests.set(rule, (this.matchedRequests.get(rule) ?? 0) + count);
    }
  }

  /** Rules whose count differs, biggest change first. */
  changes(): RuleHitChange[] {
    const sources = new Map(this.policy.rules.map((r) => [r.name, r.source]));
    const names = new Set([...this.recorded.keys(), ...this.proposed.keys()]);
    return [...names]
      .map((rule) => {
        const recorded = this.recorded.get(rule) ?? 0;
        const proposed = this.proposed.get(rule) ?? 0;
        return { rule, source: sources.get(rule) ?? null, recorded, proposed, change: proposed - recorded };
      })
      .filter((c) => c.change !== 0)
      .sort((a, b) => Math.abs(b.change) - Math.abs(a.change) || (a.rule < b.rule ? -1 : 1));
  }

  /** Proposed rules that would be recorded on no request, in policy order, and why. */
  neverMatching(now: Date): NeverMatchingRule[] {
    return this.policy.rules
      .filter((rule) => (this.proposed.get(rule.name) ?? 0) === 0)
      .map((rule) => {
        const base = { rule: rule.name, source: rule.source, action: rule.action, expires: rule.expires, shadowed_by: null, matched_requests: 0 };
        const decided = this.decided.get(rule) ?? 0;
        const shadowedBy = this.shadowedBy.get(rule);
        if (rule.expiresAt !== null && now.getTime() >= rule.expiresAt) return { ...base, why: 'expired' };
        if (decided > 0) return { ...base, why: 'guarded', matched_requests: decided };
        if (shadowedBy !== undefined) {
          return { ...base, why: 'shadowed', shadowed_by: shadowedBy, matched_requests: this.matchedRequests.get(rule) ?? 0 };
        }
        return { ...base, why: 'no_match' };
      });
  }
}
