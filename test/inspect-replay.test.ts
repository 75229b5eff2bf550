import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditOpen } from '../src/audit/record-types';
import { openAuditStore } from '../src/audit/store';
import { loadPolicy, type Policy } from '../src/policy/load';
import { openSqliteTraffic } from '../src/policy/replay/recorded-traffic';
import { replayTraffic } from '../src/policy/replay/replay';
import { parseWindow } from '../src/policy/replay/window';

/**
 * `policy replay` over records of inspected tunnels (SPEC §6): the CONNECT's record and the
 * kind-https records of the requests inside, each replayed as the proxy decides it.
 */

const NOW = new Date('2026-03-01T12:00:00Z');

const RECORDED = `version: 1
rules:
  - name: our-org
    action: allow
    hosts: [github.com]
    paths: ["/our-org/**"]
    tls: inspect
`;

/** The proposal: our organisation's settings pages are closed. */
const PROPOSED = `version: 1
rules:
  - name: no-settings
    action: deny
    hosts: [github.com]
    paths: ["/our-org/*/settings"]
  - name: our-org
    action: allow
    hosts: [github.com]
    paths: ["/our-org/**"]
    tls: inspect
`;

function policyIn(dir: string, yaml: string): { dir: string; policy: Policy } {
  mkdirSync(dir);
  writeFileSync(join(dir, 'p.yaml'), yaml);
  const loaded = loadPolicy(dir);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  return { dir, policy: loaded.policy };
}

test('records of inspected requests are replayed (not skipped) and their changes reported', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-inspect-replay-'));
  try {
    const recorded = policyIn(join(dir, 'recorded'), RECORDED);
    const proposed = policyIn(join(dir, 'proposed'), PROPOSED);
    const store = openAuditStore(join(dir, 'audit.db'));
    const at = new Date(NOW.getTime() - 60_000);
    const base: Omit<AuditOpen, 'kind' | 'method' | 'scheme' | 'path'> = {
      startedAt: at, clientIp: '10.0.8.5', clientPort: 40000, clients: [], user: null, host: 'github.com', port: 443, resolvedIp: null,
      decision: 'allow', wouldDeny: false, rule: 'our-org', ruleSource: 'p.yaml:2', reason: 'matched rule "our-org" (allow)', policyVersion: recorded.policy.version,
    };
    const done = { endedAt: at, status: 200, bytesUp: 0, bytesDown: 0, error: null };
    const tunnel: AuditOpen = { ...base, kind: 'connect', method: 'CONNECT', scheme: null, path: null, sni: 'github.com' };
    const tunnelId = await store.record(tunnel, done);
    for (const path of ['/our-org/repo', '/our-org/repo/settings', '/our-org/repo/settings']) {
      await store.record({ ...base, kind: 'https', method: 'GET', scheme: 'https', path, tunnelId }, done);
    }
    store.close();
    const traffic = openSqliteTraffic(join(dir, 'audit.db'));
    try {
      const report = await replayTraffic({ policy: proposed.policy, policiesDir: proposed.dir, traffic, window: parseWindow('1d', NOW), now: NOW });
      expect(report.records).toMatchObject({ in_window: 4, replayed: 4, skipped_malformed: 0 });
      expect(report.newly_denied).toHaveLength(1);
      expect(report.newly_denied[0]).toMatchObject({ destination: 'github.com:443', requests: 2, proposed: { rules: ['no-settings'] } });
    } finally {
      await traffic.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
