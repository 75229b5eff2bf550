import { isIP } from 'node:net';
import { describeBlock, compileGuard } from '../policy/guard';
import { explainDecision } from '../policy/explain';
import type { Explanation } from '../policy/explain';
import { formatProblem, loadPolicy } from '../policy/load';
import { GUARD_RULE } from '../proxy/exchange';
import type { AuthMode, TlsMode } from '../policy/types';
import { ProxyError } from '../request/errors';
import { formatAuthority, normalisePath, parseAbsoluteTarget, parseConnectTarget } from '../request/target';
import { INNER_KIND } from '../proxy/inspected-tunnel';
import type { Target } from '../request/target-types';
import { DEFAULT_POLICIES, parseOrUsage } from './policy';

export const TEST_HELP = `usage: tollgate policy test [--policies DIR] [--source IP] [--user NAME] [--method M] TARGET [--json]

Explain the decision for one request, on the policy alone (no DNS; the destination
guard applies to IP-literal targets).
  TARGET      http://host[:port]/path (plain HTTP), host:port (a CONNECT), or
              https://host[:port]/path (its CONNECT, then, when the tunnel is
              inspected (tls: inspect), the request inside it)
  --source    client source address (default 127.0.0.1)
  --user      proxy username, taken as authenticated; ignored, as the proxy
              ignores credentials, when settings.auth is off
  --method    HTTP method for a plain HTTP or https target (default GET)
  --json      one JSON object: decision, would_deny, rule, rule_source, reason, ...
Exit 0 allow (also a report-mode would_deny), 1 deny, 2 bad input.
`;

/** `tollgate policy test` */
export function runPolicyTest(args: string[]): number {
  const parsed = parseOrUsage(
    args,
    {
      policies: { type: 'string' },
      source: { type: 'string' },
      user: { type: 'string' },
      method: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    TEST_HELP,
  );
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  const source = typeof values.source === 'string' ? values.source : '127.0.0.1';
  let target: Target;
  let inside: Target | null = null;
  try {
    if (positionals.length !== 1) throw new ProxyError(400, 'bad_target', 'expected exactly one TARGET');
    if (isIP(source) === 0) throw new ProxyError(400, 'bad_target', `--source must be an IP address, got "${source}"`);
    if (typeof values.method === 'string' && !HTTP_TOKEN.test(values.method)) throw new ProxyError(400, 'bad_target', `--method must be an HTTP method, got "${values.method}"`);
    if (/^https:\/\//i.test(positionals[0])) ({ connect: target, inner: inside } = parseHttpsTestTarget(positionals[0]));
    else target = parseTestTarget(positionals[0]);
  } catch (err) {
    process.stderr.write(`tollgate policy test: ${err instanceof Error ? err.message : String(err)}\n`);
    return 2;
  }
  const dir = typeof values.policies === 'string' ? values.policies : DEFAULT_POLICIES;
  const loaded = loadPolicy(dir);
  if (!loaded.ok) {
    process.stderr.write(`${loaded.problems.map(formatProblem).join('\n')}\n`);
    return 2;
  }
  const requestMethod = (typeof values.method === 'string' ? values.method : 'GET').toUpperCase();
  const method = target.kind === 'connect' ? 'CONNECT' : requestMethod;
  const credentials = credentialStep(loaded.policy.settings.auth, typeof values.user === 'string' ? values.user : null);
  const explain = (t: Target, m: string): TestOutcome => (credentials.refused ? refusedForCredentials(t, credentials.notes) : {
    ...applyGuard(explainDecision(loaded.policy, {
      kind: t.kind, host: t.host, hostKind: t.hostKind, port: t.port,
      method: m, path: t.path, sourceIp: source, user: credentials.user, now: new Date(),
    }), t, loaded.policy.network),
    notes: credentials.notes,
  });
  const outcome = explain(target, method);
  if (inside !== null) return explainInside(outcome, target, inside, requestMethod, explain, values.json === true);
  process.stdout.write(values.json ? `${JSON.stringify(outcome)}\n` : formatOutcome(outcome, target, method));
  return outcome.decision === 'allow' ? 0 : 1;
}

/**
 * An https:// target: its CONNECT, and when that tunnel is inspected, the request inside as the
 * proxy decides it (SPEC §6). A tunnel that is not inspected is opaque: its CONNECT decides.
 */
function explainInside(tunnel: TestOutcome, connect: Target, inner: Target, method: string, explain: (t: Target, m: string) => TestOutcome, json: boolean): number {
  const inspected = tunnel.decision === 'allow' && tunnel.tls === 'inspect';
  const outcome = inspected ? explain(inner, method) : null;
  if (json) {
    const { considered: _considered, ...connectPart } = tunnel;
    process.stdout.write(`${JSON.stringify({ ...(outcome ?? tunnel), inspected, tunnel: connectPart })}\n`);
  } else {
    let text = formatOutcome(tunnel, connect, 'CONNECT');
    if (tunnel.decision === 'allow' && !inspected) text += `not inspected (tls: ${tunnel.tls ?? 'any'}): requests inside the tunnel are not decided one by one\n`;
    if (outcome !== null) text += `inside the tunnel:\n${formatOutcome({ ...outcome, notes: [] }, inner, method)}`;
    process.stdout.write(text);
  }
  return (outcome ?? tunnel).decision === 'allow' ? 0 : 1;
}

/** RFC 9110's token: what a method can be. */
const HTTP_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * What the proxy does with credentials before any rule (SPEC §2, identify the client), as
 * `settings.auth` asks: `off` ignores them, so `--user` must not change the answer here either;
 * `required` answers 407 to a request without them. `--user` stands for valid credentials.
 */
function credentialStep(mode: AuthMode, user: string | null): { user: string | null; refused: boolean; notes: string[] } {
  if (mode === 'off' && user !== null) {
    return { user: null, refused: false, notes: ['settings.auth is off: the proxy ignores proxy credentials, so --user changes nothing'] };
  }
  if (mode === 'required' && user === null) {
    return { user: null, refused: true, notes: ['settings.auth is required: without credentials the proxy answers 407 before any rule (try --user NAME)'] };
  }
  return { user, refused: false, notes: [] };
}

/** The 407 a request without credentials gets under `auth: required`: recorded as a deny with no rule. */
function refusedForCredentials(target: Target, notes: string[]): TestOutcome {
  return {
    decision: 'deny',
    would_deny: false,
    rule: null,
    rule_source: null,
    reason: 'proxy authentication required (407)',
    clients: [],
    tls: null,
    target: { kind: target.kind, host: target.host, port: target.port, path: target.path },
    considered: [],
    notes,
  };
}

/** `https://host[:port]/path`: the CONNECT a client sends for it, and the request inside the tunnel. */
function parseHttpsTestTarget(text: string): { connect: Target; inner: Target } {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ProxyError(400, 'bad_target', `not a URL: ${text}`);
  }
  const connect = parseConnectTarget(`${url.hostname}:${url.port === '' ? 443 : url.port}`);
  return { connect, inner: { ...connect, kind: INNER_KIND, scheme: 'https', path: normalisePath(url.pathname), search: '' } };
}

function parseTestTarget(text: string): Target {
  return /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(text) ? parseAbsoluteTarget(text) : parseConnectTarget(text);
}

interface TestOutcome {
  decision: 'allow' | 'deny';
  would_deny: boolean;
  /** Null when no rule was reached (a 407). */
  rule: string | null;
  rule_source: string | null;
  reason: string;
  clients: string[];
  /** CONNECT only: what the tunnel's first bytes must be (the SNI check), null for plain HTTP. */
  tls: TlsMode | null;
  target: { kind: string; host: string; port: number; path: string | null };
  considered: Explanation['considered'];
  /** What the answer depends on beyond the rules (the credentials step). */
  notes: string[];
}

/** An allowed IP-literal target still has to pass the guard, as it would in the proxy. */
function applyGuard(explanation: Explanation, target: Target, network: Parameters<typeof compileGuard>[0]): Omit<TestOutcome, 'notes'> {
  const { decision, considered } = explanation;
  const outcome: Omit<TestOutcome, 'notes'> = {
    decision: decision.action,
    would_deny: decision.wouldDeny,
    rule: decision.rule,
    rule_source: decision.ruleSource,
    reason: decision.reason,
    clients: decision.clients,
    tls: target.kind === 'connect' ? decision.tls : null,
    target: { kind: target.kind, host: target.host, port: target.port, path: target.path },
    considered,
  };
  if (decision.action === 'allow' && target.hostKind !== 'name') {
    const block = compileGuard(network, []).check(target.host, target.port);
    if (block) Object.assign(outcome, { decision: 'deny', would_deny: false, rule: GUARD_RULE, rule_source: null, reason: describeBlock(block) });
  }
  return outcome;
}

function formatOutcome(outcome: TestOutcome, target: Target, method: string): string {
  const lines = [`${method} ${formatAuthority(target)}${target.path ?? ''}`];
  for (const rule of outcome.considered) {
    lines.push(`  ${rule.matched ? 'match' : 'skip '}  ${rule.rule} (${rule.source}): ${rule.why}`);
  }
  const verdict = outcome.would_deny ? 'allow (would_deny: report mode lets this policy denial through)' : outcome.decision;
  lines.push(`decision: ${verdict}`, `rule: ${outcome.rule ?? '(none)'}${outcome.rule_source ? ` (${outcome.rule_source})` : ''}`, `reason: ${outcome.reason}`);
  for (const note of outcome.notes) lines.push(`note: ${note}`);
  if (outcome.clients.length > 0) lines.push(`clients: ${outcome.clients.join(', ')}`);
  if (outcome.decision === 'allow' && outcome.tls === 'inspect') {
    lines.push(`tls: inspect (the tunnel's TLS is terminated with a certificate from the inspection CA; each request inside is decided on its own: try https://${formatAuthority(target)}/PATH)`);
  } else if (outcome.decision === 'allow' && outcome.tls !== null && outcome.tls !== 'any') {
    lines.push(`tls: ${outcome.tls} (the tunnel's ClientHello must name ${outcome.target.host}${outcome.tls === 'require' ? '; anything but TLS is refused' : ''})`);
  }
  return `${lines.join('\n')}\n`;
}
