import type { AuditCompletion, AuditOpen } from '../../src/audit/record-types';

/** A plausible record: a CONNECT to one of a few hundred hosts, allowed by a named rule. */
export function openAt(n: number): AuditOpen {
  return {
    startedAt: new Date(Date.UTC(2026, 0, 1) + n), clientIp: `10.0.8.${n % 200}`, clientPort: 40000 + (n % 20000),
    clients: ['ci-runners'], user: null, kind: 'connect', method: 'CONNECT', scheme: null,
    host: `api${n % 400}.github.com`, port: 443, path: null, resolvedIp: '140.82.112.6', decision: 'allow',
    wouldDeny: false, rule: 'ci-github', ruleSource: 'policies/10-ci.yaml:12', reason: 'matched rule ci-github',
    policyVersion: 'git:3f2a9c1',
  };
}

/** Its completion, `durationMs` later, with byte counts that vary from record to record. */
export function completionAt(n: number, durationMs = 120): AuditCompletion {
  return { endedAt: new Date(Date.UTC(2026, 0, 1) + n + durationMs), status: 200, bytesUp: 517 + (n % 900), bytesDown: 4096 + (n % 70000), error: null };
}
