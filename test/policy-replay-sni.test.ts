import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'pg';
import { openAuditStore } from '../src/audit/store';
import type { AuditOpen, AuditWriter } from '../src/audit/record-types';
import { applyPgMigrations } from '../src/fleet/pg-migrate';
import { loadPolicy, type Policy } from '../src/policy/load';
import { openPgTraffic } from '../src/policy/replay/pg-recorded-traffic';
import { openSqliteTraffic, type RecordedTraffic } from '../src/policy/replay/recorded-traffic';
import { replayTraffic } from '../src/policy/replay/replay';
import type { ReplayReport } from '../src/policy/replay/report-types';
import { parseWindow } from '../src/policy/replay/window';
import { ShippingLog } from './helpers/pg-history';
import { describePg, freshDatabase } from './helpers/postgres';

/**
 * `policy replay` applies a proposed `tls:` to the `sni` tunnels recorded (issue 17): a recorded
 * SNI that names another host than the CONNECT is newly denied by `(sni)` under sni-must-match, and
 * a tunnel refused by `(sni)` comes back as allowed under `tls: any`. Both engines, same answers.
 */
const NOW = new Date('2026-03-01T12:00:00Z');

const POLICY = (tls: string, mode = 'enforce'): string => `version: 1
settings:
  default: deny
  mode: ${mode}
  tls: ${tls}
rules:
  - name: github
    action: allow
    hosts: [github.com]
    ports: [443]
`;

function tunnel(n: number, sni: string | null, refused = false): AuditOpen {
  return {
    startedAt: new Date(NOW.getTime() - 60_000 * (n + 1)), clientIp: '10.0.8.5', clientPort: 40000 + n, clients: [], user: null,
    kind: 'connect', method: 'CONNECT', scheme: null, host: 'github.com', port: 443, path: null, resolvedIp: '140.82.112.3', sni,
    decision: refused ? 'deny' : 'allow', wouldDeny: false, rule: refused ? '(sni)' : 'github', ruleSource: null,
    reason: refused ? 'TLS ClientHello names no server (no SNI)' : 'matched rule github', policyVersion: 'v1',
  };
}

/**
 * Two tunnels naming github.com, three naming another host (recorded under tls: any), one refused
 * for no SNI, one refused though it named github.com.
 */
function record(writer: AuditWriter): void {
  const done = { endedAt: NOW, status: 200, bytesUp: 1, bytesDown: 1, error: null };
  writer.record(tunnel(0, 'github.com'), done);
  writer.record(tunnel(1, 'GitHub.com.'), done);
  for (let n = 2; n < 5; n += 1) writer.record(tunnel(n, 'gist.githubusercontent.com'), done);
  writer.record(tunnel(5, null, true), { ...done, status: 403 });
  // Refused with the right name (a second ClientHello followed it): refused again under any check.
  writer.record(tunnel(6, 'github.com', true), { ...done, status: 403 });
}

function policyDir(root: string, name: string, text: string): { dir: string; policy: Policy } {
  const dir = join(root, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'policy.yaml'), text);
  const loaded = loadPolicy(dir);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  return { dir, policy: loaded.policy };
}

async function replayUnder(root: string, traffic: RecordedTraffic, name: string, text: string): Promise<ReplayReport> {
  const { dir, policy } = policyDir(root, name, text);
  return replayTraffic({ policy, policiesDir: dir, traffic, window: parseWindow('1d', NOW), now: NOW });
}

async function expectations(root: string, traffic: RecordedTraffic, prefix: string): Promise<void> {
  const strict = await replayUnder(root, traffic, `${prefix}-strict`, POLICY('sni-must-match'));
  expect(strict.newly_denied.map((r) => [r.destination, r.requests, r.proposed.rules])).toEqual([['github.com:443', 3, ['(sni)']]]);
  expect(strict.newly_allowed).toEqual([]);

  const open = await replayUnder(root, traffic, `${prefix}-any`, POLICY('any'));
  expect(open.newly_denied).toEqual([]);
  expect(open.newly_allowed.map((r) => [r.destination, r.requests, r.recorded.rules, r.proposed.rules])).toEqual([['github.com:443', 2, ['(sni)'], ['github']]]);

  const report = await replayUnder(root, traffic, `${prefix}-report`, POLICY('sni-must-match', 'report'));
  // Report mode lets a mismatch through as would_deny by (sni), as the proxy does.
  expect(report.newly_denied).toEqual([]);
  expect(report.newly_would_deny.map((r) => [r.destination, r.requests, r.proposed.rules])).toEqual([['github.com:443', 3, ['(sni)']]]);
  expect(report.newly_allowed.map((r) => [r.requests, r.proposed.outcomes])).toEqual([[2, ['would_deny']]]);
}

describe('policy replay with tls: on recorded SNIs (SQLite)', () => {
  test('newly denied by (sni), newly allowed under any, would-deny in report mode', async () => {
    const root = mkdtempSync(join(tmpdir(), 'tollgate-replay-sni-'));
    const dbFile = join(root, 'audit.db');
    const store = openAuditStore(dbFile);
    record(store);
    store.close();
    const traffic = openSqliteTraffic(dbFile);
    try {
      await expectations(root, traffic, 'sqlite');
    } finally {
      await traffic.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describePg('policy replay with tls: on recorded SNIs (PostgreSQL)', () => {
  test('the same answers from the shared history', async () => {
    const root = mkdtempSync(join(tmpdir(), 'tollgate-replay-sni-pg-'));
    const url = freshDatabase('replay-sni');
    const pool = new Pool({ connectionString: url });
    await applyPgMigrations(pool);
    const replica = new ShippingLog(join(root, 'audit-log'), { storeId: '1e3f0c4a-6b1d-4f2e-9a7c-1d5e3b9f0a12', node: 'replica-a' });
    record(replica);
    await replica.ship(pool);
    replica.close();
    await pool.end();
    const traffic = await openPgTraffic(url);
    try {
      await expectations(root, traffic, 'pg');
    } finally {
      await traffic.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
});
