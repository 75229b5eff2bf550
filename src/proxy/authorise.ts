import { decide } from '../policy/decide';
import { GuardError, resolveChecked } from './dial';
import type { ProxyContext } from './context';
import { ProxyError } from '../request/errors';
import type { Exchange } from './exchange';
import type { Target } from '../request/target-types';

/**
 * Decide a parsed target on the policy (SPEC §2 order: client, first matching rule, default).
 * Throws a 403 ProxyError when the policy denies in enforce mode.
 */
export function decideTarget(ctx: ProxyContext, exchange: Exchange, target: Target): void {
  const { policy } = ctx.active();
  exchange.target = target;
  exchange.policyVersion = policy.version;
  exchange.decision = decide(policy, {
    kind: target.kind,
    host: target.host,
    hostKind: target.hostKind,
    port: target.port,
    method: exchange.method ?? 'CONNECT',
    path: target.path,
    sourceIp: exchange.clientIp,
    user: exchange.user,
    now: exchange.startedAt,
  });
  if (exchange.decision.action === 'deny') {
    throw new ProxyError(403, 'denied', exchange.decision.reason);
  }
}

/**
 * SPEC §2 "identify the client": check proxy credentials as `settings.auth` asks. Throws 407
 * (with the Basic challenge) or 429 after repeated failures from one source address.
 */
export async function authenticate(ctx: ProxyContext, exchange: Exchange, header: string | undefined): Promise<void> {
  const mode = ctx.active().policy.settings.auth;
  if (mode === 'off') return;
  if (ctx.authenticator === null) {
    // auth asked for, but no users file: nobody can authenticate.
    if (mode === 'required') throw new ProxyError(407, 'auth_required', 'proxy authentication required (no users file configured)');
    return;
  }
  exchange.user = await ctx.authenticator.authenticate(header, mode, exchange.clientIp);
}

/**
 * Resolve once and keep only the addresses the guard lets through; the caller connects to
 * nothing else, so a second (rebinding) DNS answer can never be used.
 */
export async function resolveDestination(ctx: ProxyContext, exchange: Exchange, target: Target): Promise<string[]> {
  try {
    const { addresses } = await resolveChecked(target, ctx.active().guard, ctx.resolver, ctx.timeouts.dnsMs);
    return addresses;
  } catch (err) {
    if (err instanceof GuardError) exchange.guardReason = err.reason;
    throw err;
  }
}
