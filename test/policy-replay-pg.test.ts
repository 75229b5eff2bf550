import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Pool } from 'pg';
import type { AuditOpen, AuditWriter } from '../src/audit/record-types';
import type { ReplayReport } from '../src/policy/replay/report-types';
import type { UnusedReport } from '../src/policy/replay/unused';
import { PROPOSED_POLICIES, RECORDED_POLICIES, recordTraffic } from './fixtures/replay/traffic';
import { twinHistories, type TwinHistories } from './helpers/pg-history';
import { describePg, freshDatabase } from './helpers/postgres';
import { CLI, ensureBuilt, REPO_ROOT } from './helpers/serve-process';

/**
 * `policy replay` and `policy unused` on both engines: the same records in a local SQLite store
 * (written by the store) and in the shared history (shipped by the real ship path), run as CLI
 * processes with --db and with --audit-url, must report the same thing.
 */

const MINUTE = 60_000;
const PASSWORD = 'Pw-not-shown-9';

function tollgate(env: NodeJS.ProcessEnv, ...args: string[]) {
  ensureBuilt();
  const base = { ...process.env };
  delete base.TOLLGATE_AUDIT_URL;
  delete base.TOLLGATE_POLICIES;
  const run = spawnSync(process.execPath, [CLI, ...args], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000, env: { ...base, ...env } });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

/**
 * Shapes whose keys sort differently by column than as JSON text (a quote, a space, a prefix, an
 * IPv6 client, a user), so the order both engines replay in is really tested.
 */
function recordAwkwardShapes(audit: AuditWriter, version: string, nowMs: number): void {
  const base: AuditOpen = {
    startedAt: new Date(nowMs - 3 * MINUTE), clientIp: '10.0.8.5', clientPort: 40002, clients: [], user: null, kind: 'http',
    method: 'GET', scheme: 'http', host: 'deb.debian.org', port: 80, path: '/a', resolvedIp: null, decision: 'allow',
    wouldDeny: false, rule: 'apt', ruleSource: null, reason: 'matched rule apt', policyVersion: version,
  };
  const done = { endedAt: new Date(nowMs - 3 * MINUTE), status: 200, bytesUp: 1, bytesDown: 2, error: null };
  for (const change of [
    { path: '/a!' }, { path: '/a "quoted"' }, { path: '/a b' }, { path: '/a\tb' }, { path: '/ä' }, { user: 'alice' },
    { clientIp: '::1' }, { clientIp: '2001:db8::7' }, { method: 'HEAD' }, { host: 'deb.debian.org.' }, { host: 'x', port: 8080, kind: 'connect' as const, path: null },
  ]) {
    audit.record({ ...base, ...change }, done);
  }
  audit.record({ ...base, policyVersion: null }, done);
}

describePg('policy replay and unused: --db and --audit-url agree', () => {
  let dir: string;
  let dbFile: string;
  let url: string;
  let pool: Pool;

  let twins: TwinHistories;

  beforeAll(async () => {
    twins = await twinHistories('replay', { storeId: '8e3f0c4a-6b1d-4f2e-9a7c-1d5e3b9f0a11', node: 'replica-a' }, RECORDED_POLICIES, PASSWORD, (audit, policy, now) => {
      recordTraffic(audit, policy, now);
      recordAwkwardShapes(audit, policy.version, now);
    });
    ({ dir, dbFile, url, pool } = twins);
  });

  afterAll(async () => {
    await twins.close();
  });

  /** What may differ between two runs: the source's name, the clock, the time taken. */
  function comparable<T extends { db: string; window: { since: string; until: string } }>(report: T): unknown {
    return { ...report, db: '(source)', window: { ...report.window, since: '(now)', until: '(now)' }, elapsed_ms: 0 };
  }

  test('policy replay --format json: the same report from both engines', () => {
    const fromSqlite = tollgate({}, 'policy', 'replay', '--db', dbFile, '--policies', PROPOSED_POLICIES, '--format', 'json');
    const fromPg = tollgate({}, 'policy', 'replay', '--audit-url', url, '--policies', PROPOSED_POLICIES, '--format', 'json');
    expect(fromPg.stderr).toBe('');
    expect(fromPg.status).toBe(0);
    expect(fromSqlite.status).toBe(0);
    const sqliteReport = JSON.parse(fromSqlite.stdout) as ReplayReport;
    const pgReport = JSON.parse(fromPg.stdout) as ReplayReport;
    expect(pgReport.records.in_window).toBe(54);
    expect(pgReport.records.shapes).toBeGreaterThan(20);
    expect(pgReport.never_matching.some((r) => r.shadowed_by !== null)).toBe(true);
    expect(comparable(pgReport)).toEqual(comparable(sqliteReport));
    expect(pgReport.db).toBe(url.replace(PASSWORD, '***'));
    expect(fromPg.stdout).not.toContain(PASSWORD);
  });

  test('--fail-on-new-denials and the markdown report behave the same on PostgreSQL', () => {
    const args = ['policy', 'replay', '--policies', PROPOSED_POLICIES, '--format', 'markdown', '--fail-on-new-denials'];
    const fromSqlite = tollgate({}, ...args, '--db', dbFile);
    const fromPg = tollgate({}, ...args, '--audit-url', url);
    expect(fromPg.status).toBe(1);
    expect(fromSqlite.status).toBe(1);
    expect(fromPg.stdout.split('\n').slice(0, 12)).toEqual(fromSqlite.stdout.split('\n').slice(0, 12));
  });

  test('policy unused --format json: the same report, from the flag, the file and the environment', () => {
    const args = ['policy', 'unused', '--policies', PROPOSED_POLICIES, '--since', '7d', '--format', 'json'];
    const fromSqlite = JSON.parse(tollgate({}, ...args, '--db', dbFile).stdout) as UnusedReport;
    const file = join(dir, 'audit-url');
    writeFileSync(file, `${url}\n`);
    const runs = [tollgate({}, ...args, '--audit-url', url), tollgate({}, ...args, '--audit-url-file', file), tollgate({ TOLLGATE_AUDIT_URL: url }, ...args)];
    expect(fromSqlite.records_in_window).toBe(54);
    expect(fromSqlite.rules.filter((r) => r.hits > 0).length).toBeGreaterThan(3);
    for (const run of runs) {
      expect(run.stderr).toBe('');
      expect(run.status).toBe(0);
      expect(run.stdout).not.toContain(PASSWORD);
      expect(comparable(JSON.parse(run.stdout) as UnusedReport)).toEqual(comparable(fromSqlite));
    }
  });

  test('--db wins over TOLLGATE_AUDIT_URL; --db with --audit-url is refused', () => {
    const env = { TOLLGATE_AUDIT_URL: 'postgres://nobody@127.0.0.1:1/none' };
    expect(tollgate(env, 'policy', 'unused', '--db', dbFile, '--policies', PROPOSED_POLICIES).status).toBe(0);
    const both = tollgate({}, 'policy', 'unused', '--db', dbFile, '--audit-url', url, '--policies', PROPOSED_POLICIES);
    expect(both.status).toBe(2);
    expect(both.stderr).toMatch(/give --db FILE or --audit-url URL, not both/);
  });

  test('PostgreSQL unreachable: exit 2 (never 1, which means new denials), no password', () => {
    const down = `postgres://tollgate:${PASSWORD}@127.0.0.1:1/history`;
    const run = tollgate({ TOLLGATE_AUDIT_URL: down }, 'policy', 'replay', '--policies', PROPOSED_POLICIES, '--fail-on-new-denials');
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/^tollgate policy replay: cannot read the shared history postgres:\/\/tollgate:\*\*\*@127\.0\.0\.1:1\/history: .*ECONNREFUSED/);
    expect(run.stderr).not.toContain(PASSWORD);
  });

  test('a database without the shared history: exit 2 with the reason', () => {
    const empty = freshDatabase('replay_empty');
    const run = tollgate({}, 'policy', 'unused', '--audit-url', empty, '--policies', PROPOSED_POLICIES);
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/cannot read postgres:.*relation "requests" does not exist/);
  });
});
