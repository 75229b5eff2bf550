import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import { describeBlock, compileGuard } from '../policy/guard';
import { checkPolicies } from '../policy/check';
import { explainDecision } from '../policy/explain';
import type { Explanation } from '../policy/explain';
import { formatProblem, loadPolicy } from '../policy/load';
import { GUARD_RULE } from '../proxy/exchange';
import { ProxyError } from '../proxy/errors';
import { formatAuthority, parseAbsoluteTarget, parseConnectTarget } from '../proxy/target';
import type { Target } from '../proxy/target-types';

const DEFAULT_POLICIES = process.env.TOLLGATE_POLICIES ?? './policies';

const CHECK_HELP = `usage: tollgate policy check [--policies DIR]

Validate every *.yaml/*.yml in DIR (default ./policies or $TOLLGATE_POLICIES).
Prints each problem as FILE:LINE: message. Exit 0 valid, 1 invalid.
`;

const TEST_HELP = `usage: tollgate policy test [--policies DIR] [--source IP] [--user NAME] [--method M] TARGET [--json]

Explain the decision for one request, on the policy alone (no DNS; the destination
guard applies to IP-literal targets).
  TARGET      http://host[:port]/path (plain HTTP) or host:port (a CONNECT)
  --source    client source address (default 127.0.0.1)
  --user      proxy username
  --method    HTTP method for a plain HTTP target (default GET)
  --json      one JSON object: decision, would_deny, rule, rule_source, reason, ...
Exit 0 allow (also a report-mode would_deny), 1 deny, 2 bad input.
`;

/** `tollgate policy check` */
export function runPolicyCheck(args: string[]): number {
  const parsed = parseOrUsage(args, { policies: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, CHECK_HELP);
  if (typeof parsed === 'number') return parsed;
  // `policy check DIR` would otherwise check ./policies and call it valid: refuse, don't guess.
  if (parsed.positionals.length > 0) {
    process.stderr.write(`unexpected argument "${parsed.positionals[0]}"; give the folder as --policies DIR\n\n${CHECK_HELP}`);
    return 2;
  }
  const dir = typeof parsed.values.policies === 'string' ? parsed.values.policies : DEFAULT_POLICIES;
  const result = checkPolicies(dir);
  for (const line of result.lines) (result.ok ? process.stdout : process.stderr).write(`${line}\n`);
  if (result.ok) process.stdout.write(`${dir}: policies are valid\n`);
  return result.ok ? 0 : 1;
}

type Values = Record<string, string | boolean | undefined>;

function parseOrUsage(
  args: string[],
  options: Record<string, { type: 'string' | 'boolean'; short?: string }>,
  help: string,
): { values: Values; positionals: string[] } | number {
  try {
    const parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
    if (parsed.values.help) {
      process.stdout.write(help);
      return 0;
    }
    return { values: parsed.values as Values, positionals: parsed.positionals };
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${help}`);
    return 2;
  }
}

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
  try {
    if (positionals.length !== 1) throw new ProxyError(400, 'bad_target', 'expected exactly one TARGET');
    if (isIP(source) === 0) throw new ProxyError(400, 'bad_target', `--source must be an IP address, got "${source}"`);
    target = parseTestTarget(positionals[0]);
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
  const method = target.kind === 'connect' ? 'CONNECT' : (typeof values.method === 'string' ? values.method : 'GET').toUpperCase();
  const user = typeof values.user === 'string' ? values.user : null;
  const explanation = explainDecision(loaded.policy, {
    kind: target.kind, host: target.host, hostKind: target.hostKind, port: target.port,
    method, path: target.path, sourceIp: source, user, now: new Date(),
  });
  const outcome = applyGuard(explanation, target, loaded.policy.network);
  process.stdout.write(values.json ? `${JSON.stringify(outcome)}\n` : formatOutcome(outcome, target, method));
  return outcome.decision === 'allow' ? 0 : 1;
}

function parseTestTarget(text: string): Target {
  return /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(text) ? parseAbsoluteTarget(text) : parseConnectTarget(text);
}

interface TestOutcome {
  decision: 'allow' | 'deny';
  would_deny: boolean;
  rule: string;
  rule_source: string | null;
  reason: string;
  clients: string[];
  target: { kind: string; host: string; port: number; path: string | null };
  considered: Explanation['considered'];
}

/** An allowed IP-literal target still has to pass the guard, as it would in the proxy. */
function applyGuard(explanation: Explanation, target: Target, network: Parameters<typeof compileGuard>[0]): TestOutcome {
  const { decision, considered } = explanation;
  const outcome: TestOutcome = {
    decision: decision.action,
    would_deny: decision.wouldDeny,
    rule: decision.rule,
    rule_source: decision.ruleSource,
    reason: decision.reason,
    clients: decision.clients,
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
  lines.push(`decision: ${verdict}`, `rule: ${outcome.rule}${outcome.rule_source ? ` (${outcome.rule_source})` : ''}`, `reason: ${outcome.reason}`);
  if (outcome.clients.length > 0) lines.push(`clients: ${outcome.clients.join(', ')}`);
  return `${lines.join('\n')}\n`;
}
