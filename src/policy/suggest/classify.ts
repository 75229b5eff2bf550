import { GUARD_RULE } from '../../proxy/exchange';
import { SNI_RULE } from '../../proxy/sni-check';
import type { Policy } from '../compiled';
import { normalizeRequestPath } from '../path-match';
import { ShapeDecider, type ProposedOutcome } from '../replay/decide-shape';
import type { RecordedShape } from '../replay/recorded-shape';
import type { ShapeSource } from '../replay/recorded-traffic';
import { destinationOf } from '../replay/tally';
import type { LeftOutDestination, LeftOutReason, Observed, SuggestBy, SuggestOptions, SuggestSummary } from './types';

/**
 * Reads the window's request shapes (both engines: replay/recorded-traffic.ts), decides each
 * under the CURRENT policy as `policy replay` does (decide-shape.ts: the guard and the SNI check
 * included), and sorts it: traffic allowed only by the default, or only reported (would_deny) by
 * it, is what the suggestion is written for; everything else is left out with its reason.
 */

export interface Classified {
  observed: Observed[];
  leftOut: LeftOutTally;
  records: SuggestSummary['records'];
}

/** Why the current decision keeps a shape out of the suggestion, or null to suggest it. */
function leftOutReason(proposed: ProposedOutcome): LeftOutReason | null {
  if (proposed.rule === GUARD_RULE) return 'guard';
  if (proposed.rule === SNI_RULE) return 'sni';
  const { decider } = proposed.verdict;
  // A deny rule in report mode (a trial) is as explicit as an enforced one: never undone here.
  if (decider !== null) return decider.action === 'deny' ? 'explicit_deny' : 'already_allowed';
  // The default: suggested when it lets the request through (default allow) or only reports it.
  return proposed.outcome === 'deny' ? 'default_deny' : null;
}

/** Left-out destinations by reason and host:port, with the rules that decide them. */
export class LeftOutTally {
  private readonly rows = new Map<string, LeftOutDestination>();

  add(reason: LeftOutReason, destination: string, requests: number, rule: string): void {
    const key = `${reason} ${destination}`;
    let row = this.rows.get(key);
    if (row === undefined) {
      row = { destination, reason, requests: 0, rules: [] };
      this.rows.set(key, row);
    }
    row.requests += requests;
    if (!row.rules.includes(rule)) row.rules.push(rule);
  }

  /** By reason (types.ts order), most requests first, then by destination. */
  list(order: readonly LeftOutReason[]): LeftOutDestination[] {
    return [...this.rows.values()]
      .map((row) => ({ ...row, rules: [...row.rules].sort() }))
      .sort((a, b) => order.indexOf(a.reason) - order.indexOf(b.reason) || b.requests - a.requests || (a.destination < b.destination ? -1 : 1));
  }
}

function observedKey(group: string | null, shape: RecordedShape, http: boolean): string {
  return JSON.stringify([group, shape.host, shape.port, http]);
}

/** Accumulates the suggested shapes by group and destination. */
class ObservedTally {
  private readonly byKey = new Map<string, Observed>();

  constructor(private readonly withPaths: boolean) {}

  add(group: string | null, shape: RecordedShape): void {
    // Only plain HTTP has a method and path to write; a tunnel's rule can have neither (SPEC §2).
    const http = this.withPaths && shape.kind === 'http' && shape.path !== null;
    const key = observedKey(group, shape, http);
    let seen = this.byKey.get(key);
    if (seen === undefined) {
      seen = {
        group, host: shape.host, hostKind: shape.hostKind, port: shape.port, http, requests: 0,
        clientIps: new Set(), lastSeenMs: 0, methods: new Set(), paths: new Set(),
      };
      this.byKey.set(key, seen);
    }
    seen.requests += shape.count;
    seen.clientIps.add(shape.clientIp);
    seen.lastSeenMs = Math.max(seen.lastSeenMs, shape.lastSeenMs);
    if (http && shape.path !== null) {
      seen.methods.add(shape.method.toUpperCase());
      seen.paths.add(normalizeRequestPath(shape.path));
    }
  }

  values(): Observed[] {
    return [...this.byKey.values()];
  }
}

/**
 * The group a shape's rule is for: the first of its client groups in policy order (a request in
 * two groups is allowed for the first; the rule still matches it), or null for every client.
 */
function groupOf(by: SuggestBy, clients: readonly string[]): string | null {
  return by === 'client-group' ? (clients[0] ?? null) : null;
}

/** Reads the window once (call inside traffic.snapshot) and sorts every shape. */
export async function classifyTraffic(traffic: ShapeSource, policy: Policy, options: SuggestOptions, by: SuggestBy): Promise<Classified> {
  const records = { in_window: 0, considered: 0, inside_tunnels: 0, skipped_malformed: 0, skipped_undecided: 0 };
  const leftOut = new LeftOutTally();
  const observed = new ObservedTally(options.withPaths);
  const decider = new ShapeDecider(policy, options.now, () => undefined);
  for await (const verdict of traffic.shapes(options.window)) {
    if (!verdict.ok) {
      records.in_window += verdict.count;
      if (verdict.why === 'undecided') records.skipped_undecided += verdict.count;
      else records.skipped_malformed += verdict.count;
      continue;
    }
    const { shape } = verdict;
    // Read inside an inspected tunnel: its tunnel's CONNECT record is the shape a rule allows.
    if (shape.kind === 'https') {
      records.in_window += shape.count;
      records.inside_tunnels += shape.count;
      continue;
    }
    records.in_window += shape.count;
    records.considered += shape.count;
    const proposed = decider.decide(shape);
    const reason = leftOutReason(proposed);
    if (reason === null) observed.add(groupOf(by, proposed.verdict.clients), shape);
    else leftOut.add(reason, destinationOf(shape), shape.count, proposed.rule);
  }
  return { observed: observed.values(), leftOut, records };
}
