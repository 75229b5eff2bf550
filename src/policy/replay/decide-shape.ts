import { GUARD_RULE } from '../../proxy/exchange';
import type { CompiledRule, Policy } from '../compiled';
import { decisionFor, firstMatch } from '../decide';
import { compileGuard, type Guard } from '../guard';
import { identifyClients, prepareRequest, type PreparedRequest } from '../match-rule';
import type { RecordedShape } from './recorded-shape';
import type { Outcome } from './report-types';
import type { Mode, TlsMode } from '../types';
import { SNI_RULE, sniNamesHost } from '../../proxy/sni-check';

/** What was recorded, or what the proposed policy would record, for one request shape. */
export interface ShapeOutcome {
  outcome: Outcome;
  /** The rule that would be recorded: a rule name, `(default)` or `(guard)`. */
  rule: string;
}

/** The proposed policy's decision for a request, before the guard; shared by equal requests. */
export interface PolicyVerdict extends ShapeOutcome {
  /** The deciding rule, or null for the default. */
  decider: CompiledRule | null;
  clients: readonly string[];
  req: PreparedRequest;
  /** What the tunnel's first bytes must be under the deciding rule (CONNECT only). */
  tls: TlsMode;
  /** The mode of the deciding rule (its own, else settings.mode). */
  mode: Mode;
}

export interface ProposedOutcome extends ShapeOutcome {
  verdict: PolicyVerdict;
}

export function recordedOutcome(shape: RecordedShape): ShapeOutcome {
  const outcome: Outcome = shape.decision === 'deny' ? 'deny' : shape.wouldDeny ? 'would_deny' : 'allow';
  return { outcome, rule: shape.rule };
}

/**
 * Decides recorded request shapes under the proposed policy. Shapes differ mostly by client
 * address, and a decision depends on the address only through the client groups it falls in
 * (match-rule.ts), so decisions are shared by every shape with the same facts and groups: a
 * million records come down to a few thousand decisions.
 */
export class ShapeDecider {
  private readonly guard: Guard;
  private readonly groupsByIp = new Map<string, readonly string[]>();
  private readonly verdicts = new Map<string, PolicyVerdict>();

  /** `onVerdict` sees each distinct decision once, when it is first made. */
  constructor(
    private readonly policy: Policy,
    private readonly now: Date,
    private readonly onVerdict: (verdict: PolicyVerdict) => void,
  ) {
    // The own-listener part of the guard needs the proxy's addresses, unknown here; the built-in
    // and `network` ranges are what a proposed policy can change.
    this.guard = compileGuard(policy.network, [], {});
  }

  /**
   * The policy's decision, then the destination guard as far as it can be replayed without DNS.
   * The guard runs only on what the policy lets through (report mode included), as in the proxy.
   * An IP-literal target is checked against the proposed `network` ranges. A name cannot be:
   * where it resolved then is not known, so a name the guard refused when it was recorded is
   * taken to be refused again, and one it let through to pass again.
   */
  decide(shape: RecordedShape): ProposedOutcome {
    const verdict = this.verdict(shape);
    if (verdict.outcome === 'deny') return { outcome: verdict.outcome, rule: verdict.rule, verdict };
    const guarded = shape.hostKind === 'name' ? shape.rule === GUARD_RULE : this.guard.check(shape.host, shape.port) !== null;
    if (guarded) return { outcome: 'deny', rule: GUARD_RULE, verdict };
    // The SNI check comes after the guard, as in the proxy (tunnel.ts); report mode lets it through.
    if (shape.kind === 'connect' && refusedBySni(shape, verdict.tls)) {
      return { outcome: verdict.mode === 'report' ? 'would_deny' : 'deny', rule: SNI_RULE, verdict };
    }
    return { outcome: verdict.outcome, rule: verdict.rule, verdict };
  }

  /** Distinct decisions made so far. */
  get decisions(): number {
    return this.verdicts.size;
  }

  private verdict(shape: RecordedShape): PolicyVerdict {
    let groups = this.groupsByIp.get(shape.clientIp);
    if (groups === undefined) {
      groups = identifyClients(this.policy, shape.clientIp);
      this.groupsByIp.set(shape.clientIp, groups);
    }
    const key = JSON.stringify([shape.kind, shape.method, shape.host, shape.port, shape.path, this.userOf(shape), groups]);
    let verdict = this.verdicts.get(key);
    if (verdict === undefined) {
      verdict = this.decidePolicy(shape);
      this.verdicts.set(key, verdict);
      this.onVerdict(verdict);
    }
    return verdict;
  }

  /** The recorded user, as the proxy would take it: ignored when the proposed `settings.auth` is off. */
  private userOf(shape: RecordedShape): string | null {
    return this.policy.settings.auth === 'off' ? null : shape.user;
  }

  private decidePolicy(shape: RecordedShape): PolicyVerdict {
    const req = prepareRequest(this.policy, {
      kind: shape.kind, host: shape.host, hostKind: shape.hostKind, port: shape.port, method: shape.method,
      path: shape.path, sourceIp: shape.clientIp, user: this.userOf(shape), now: this.now,
    });
    const decider = firstMatch(this.policy, req);
    const decision = decisionFor(this.policy, req, decider);
    const outcome: Outcome = decision.action === 'deny' ? 'deny' : decision.wouldDeny ? 'would_deny' : 'allow';
    return { outcome, rule: decision.rule, decider, clients: req.clients, req, tls: decision.tls, mode: decision.mode };
  }
}

/**
 * Whether the proposed `tls:` would refuse a recorded tunnel, from what its record says the client
 * sent (sni-check.ts judge). A tunnel the proxy refused by `(sni)` (no SNI, no ClientHello, a
 * second ClientHello, ECH under require…) is taken to be refused again under any check; otherwise a
 * recorded SNI is compared with the CONNECT host as the proxy compares them. Without one, the record
 * cannot say what the client sent (a tunnel recorded under `tls: any`, or a non-TLS one passed by
 * sni-must-match, which `require` would refuse): it is taken to pass. docs/policies.md: replay and the SNI check.
 */
function refusedBySni(shape: RecordedShape, mode: TlsMode): boolean {
  if (mode === 'any') return false;
  // Refused for what it sent (no SNI, a second ClientHello, ECH under require…): refused again.
  if (shape.rule === SNI_RULE) return true;
  if (shape.sni === null) return false;
  // An address has no name to compare: the policy allowed that address, whatever the client calls it.
  if (shape.hostKind !== 'name') return false;
  return !sniNamesHost(shape.sni, shape.host);
}
