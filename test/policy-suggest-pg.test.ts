import { spawnSync } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Pool } from 'pg';
import type { ReplayReport } from '../src/policy/replay/report-types';
import { CURRENT_POLICIES, recordSuggestTraffic } from './fixtures/suggest/traffic';
import { twinHistories, type TwinHistories } from './helpers/pg-history';
import { describePg } from './helpers/postgres';
import { CLI, ensureBuilt, REPO_ROOT } from './helpers/serve-process';

/**
 * `policy suggest` on both engines: the same records in a local SQLite store and in the fleet's
 * shared history (shipped by the real ship path) give the same rules, and the PostgreSQL
 * suggestion passes the same enforce replay.
 */
const PASSWORD = 'Pw-not-shown-20';

function tollgate(...args: string[]) {
  ensureBuilt();
  const env = { ...process.env };
  delete env.TOLLGATE_AUDIT_URL;
  delete env.TOLLGATE_POLICIES;
  const run = spawnSync(process.execPath, [CLI, ...args], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000, env });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** The file without its header comment (it names the source and the time it was made). */
const body = (yaml: string): string => yaml.slice(yaml.indexOf('\nversion: 1\n'));

describePg('policy suggest: --db and --audit-url agree', () => {
  let dir: string;
  let dbFile: string;
  let url: string;
  let pool: Pool;

  let twins: TwinHistories;

  beforeAll(async () => {
    twins = await twinHistories('suggest', { storeId: '5b0e7f7e-2c41-4d8a-9a53-0f3e2d6c1b20', node: 'replica-s' }, CURRENT_POLICIES, PASSWORD, (audit, policy, now) => recordSuggestTraffic(audit, policy, now));
    ({ dir, dbFile, url, pool } = twins);
  });

  afterAll(async () => {
    await twins.close();
  });

  test('the same YAML from both engines, for every grouping; no password anywhere', () => {
    for (const extra of [[], ['--by', 'none', '--with-paths'], ['--min-requests', '2']]) {
      const fromSqlite = tollgate('policy', 'suggest', '--db', dbFile, '--policies', CURRENT_POLICIES, ...extra);
      const fromPg = tollgate('policy', 'suggest', '--audit-url', url, '--policies', CURRENT_POLICIES, ...extra);
      expect(fromPg.status).toBe(0);
      expect(fromSqlite.status).toBe(0);
      expect(body(fromPg.stdout)).toEqual(body(fromSqlite.stdout));
      expect(fromPg.stdout).toContain(url.replace(PASSWORD, '***'));
      expect(fromPg.stdout + fromPg.stderr).not.toContain(PASSWORD);
    }
  });

  test('the PostgreSQL suggestion, enforced: replay denies nothing new but the explicit deny', () => {
    const folder = join(dir, 'adopt');
    cpSync(CURRENT_POLICIES, folder, { recursive: true });
    const file = join(dir, 'audit-url');
    writeFileSync(file, `${url}\n`);
    const run = tollgate('policy', 'suggest', '--audit-url-file', file, '--policies', folder, '--out', join(folder, '90-suggested.yaml'));
    expect(run.status).toBe(0);
    expect(run.stderr).toMatch(/wrote 12 rules/);
    const settings = join(folder, '00-settings.yaml');
    writeFileSync(settings, readFileSync(settings, 'utf8').replace('mode: report', 'mode: enforce'));
    const replay = tollgate('policy', 'replay', '--audit-url', url, '--policies', folder, '--since', '14d', '--format', 'json');
    expect(replay.status).toBe(0);
    const report = JSON.parse(replay.stdout) as ReplayReport;
    expect(report.newly_denied.map((r) => [r.destination, r.proposed.rules])).toEqual([['pastebin.com:443', ['deny-paste']]]);
  });

  test('PostgreSQL unreachable: exit 2, no password', () => {
    const run = tollgate('policy', 'suggest', '--audit-url', `postgres://tollgate:${PASSWORD}@127.0.0.1:1/history`, '--policies', CURRENT_POLICIES);
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/^tollgate policy suggest: cannot read the shared history postgres:\/\/tollgate:\*\*\*@127\.0\.0\.1:1\/history: .*ECONNREFUSED/);
    expect(run.stderr).not.toContain(PASSWORD);
  });
});
