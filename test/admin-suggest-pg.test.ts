import type { FastifyInstance } from 'fastify';
import { buildAdminApp } from '../src/admin/app';
import { NO_POLICY_IN_ADMIN_MODE } from '../src/commands/admin';
import { loadPolicy } from '../src/policy/load';
import type { SuggestResult } from '../src/policy/suggest/suggest';
import { DAY, MINUTE, NOW } from './helpers/admin-fixture';
import type { FixtureRecord } from './helpers/admin-fixture';
import { openHistory } from './helpers/admin-engines';
import type { History } from './helpers/admin-engines';
import { describePg } from './helpers/postgres';
import { CURRENT_POLICIES } from './fixtures/suggest/traffic';
import { XSS_PATH, bodyOf } from './helpers/suggest-route';

/**
 * GET /api/policy/suggest over the fleet's shared history in PostgreSQL: the same answer as over
 * SQLite for the same records and policy, and 503 where no policy exists (`tollgate admin`).
 */

const T = NOW.getTime();
const loaded = loadPolicy(CURRENT_POLICIES);
if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
const policy = loaded.policy;
const snapshot = () => ({ policy, lastReload: { ok: true, at: NOW.toISOString(), version: policy.version, problems: [] } });

const REPORTED = { decision: 'allow', wouldDeny: true, rule: '(default)' } as const;

/** Report-mode traffic of two client groups and one client in none, over 20 days. */
function records(): FixtureRecord[] {
  const list: FixtureRecord[] = [];
  const add = (count: number, r: Omit<FixtureRecord, 'at'>, minutesAgo: number) => {
    for (let i = 0; i < count; i += 1) list.push({ ...r, at: T - (minutesAgo + i) * MINUTE });
  };
  const ci = { clientIp: '10.0.8.5', clients: ['ci-runners'] };
  const office = { clientIp: '192.168.1.10', clients: ['office'] };
  for (const [i, host] of ['github.com', 'api.github.com', 'objects.github.com', 'codeload.github.com'].entries()) add(2 + i, { ...ci, ...REPORTED, host }, 10 + i * 7);
  add(3, { ...ci, host: 'registry.npmjs.org', rule: 'npm' }, 40);
  add(2, { ...office, host: 'pastebin.com', decision: 'deny', rule: 'deny-paste' }, 50);
  add(2, { ...office, ...REPORTED, host: 'docs.example.org' }, 60);
  add(1, { ...office, ...REPORTED, host: 'alpha.s3.amazonaws.com' }, 65);
  add(2, { ...office, ...REPORTED, host: 'deb.debian.org', kind: 'http', path: '/debian/dists/stable/Release' }, 70);
  add(1, { ...office, ...REPORTED, host: 'deb.debian.org', kind: 'http', path: XSS_PATH }, 75);
  add(1, { clientIp: '172.16.5.5', ...REPORTED, host: 'yes' }, 80);
  add(1, { ...office, ...REPORTED, host: '<img src=x onerror=alert(1)>.evil' }, 85);
  add(1, { ...ci, ...REPORTED, host: 'old.example.com' }, 20 * DAY / MINUTE);
  return list;
}

const QUERIES = [
  '', 'host=%2A%2A.github.com', 'not.host=%2A%2A.github.com', 'not.client=office', 'client=ci-runners&decision=allow',
  'with_paths=1&by=none', 'min_requests=3', 'since=30d', 'since=1h&until=30m', 'q=debian&with_paths=1',
];

describePg('GET /api/policy/suggest on PostgreSQL', () => {
  const apps: Record<string, FastifyInstance> = {};
  const histories: History[] = [];

  beforeAll(async () => {
    for (const engine of ['sqlite', 'postgres'] as const) {
      const history = await openHistory(engine, `tollgate-suggest-${engine}-`);
      await history.write(records());
      histories.push(history);
      apps[engine] = buildAdminApp({ reader: history.reader, ready: () => ({ ok: true, detail: {} }), clock: () => NOW, policy: snapshot });
    }
  });

  afterAll(async () => {
    for (const app of Object.values(apps)) await app.close();
    for (const history of histories) await history.cleanup();
  });

  async function suggest(engine: string, query: string): Promise<SuggestResult> {
    const res = await apps[engine].inject({ method: 'GET', url: `/api/policy/suggest?${query}` });
    expect({ engine, query, status: res.statusCode }).toEqual({ engine, query, status: 200 });
    return res.json<SuggestResult>();
  }

  test.each(QUERIES)('?%s: the same file and summary as on SQLite', async (query) => {
    const sqlite = await suggest('sqlite', query);
    const pg = await suggest('postgres', query);
    expect(pg.summary).toEqual(sqlite.summary);
    expect(pg.yaml).toBe(sqlite.yaml.replace('from the sqlite audit history', 'from the postgres audit history'));
  });

  test('the answers carry the traffic: rules, explicit denies left out, the old record outside the window', async () => {
    const all = await suggest('postgres', '');
    expect(all.summary.rules).toBeGreaterThan(2);
    expect(all.yaml).toContain('"**.github.com"');
    expect(all.yaml).not.toContain('old.example.com');
    expect(all.summary.left_out.map((row) => [row.destination, row.reason])).toEqual(expect.arrayContaining([
      ['pastebin.com:443', 'explicit_deny'], ['registry.npmjs.org:443', 'already_allowed'],
    ]));
    expect(all.summary.records.skipped_malformed).toBe(1);
    const wide = await suggest('postgres', 'since=30d');
    expect(wide.yaml).toContain('old.example.com');
    const narrowed = await suggest('postgres', 'not.host=%2A%2A.github.com');
    expect(bodyOf(narrowed.yaml)).not.toContain('github');
  });

  test('`tollgate admin` has no policy: 503 with its reason, as GET /api/policy', async () => {
    const history = histories.find((h) => h.engine === 'postgres');
    if (history === undefined) throw new Error('no PostgreSQL history');
    const admin = buildAdminApp({ reader: history.reader, ready: () => ({ ok: true, detail: {} }), clock: () => NOW, noPolicyReason: NO_POLICY_IN_ADMIN_MODE });
    try {
      for (const url of ['/api/policy', '/api/policy/suggest', '/api/policy/suggest?host=github.com']) {
        const res = await admin.inject({ method: 'GET', url });
        expect({ url, status: res.statusCode, body: res.json() }).toEqual({ url, status: 503, body: { error: NO_POLICY_IN_ADMIN_MODE } });
      }
    } finally {
      await admin.close();
    }
  });
});
