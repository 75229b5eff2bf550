import type { FastifyInstance } from 'fastify';
import { buildAdminApp } from '../src/admin/app';
import { registrableDomain } from '../src/audit/facets';
import type { FacetsAnswer } from '../src/audit/facets';
import type { Stats } from '../src/audit/stats';
import type { RequestPage } from '../src/audit/query';
import { DAY, HOUR, MINUTE, NOW, seeded } from './helpers/admin-fixture';
import type { FixtureRecord } from './helpers/admin-fixture';
import { ENGINES, FIXTURE_NODE, openHistory } from './helpers/admin-engines';
import type { Engine, History } from './helpers/admin-engines';
import { postgresTestsOff } from './helpers/postgres';

/**
 * Issue 19 on both engines: facets counted exactly against known data, `not.NAME` filters,
 * /api/stats with filters, and a NUL byte in `q`. Each expectation is computed from the fixture
 * records themselves (a brute-force oracle), never from the engine under test.
 */

const T = NOW.getTime();
const HOSTS = ['github.com', 'api.github.com', 'raw.githubusercontent.com', 'pastebin.com', 'a.b.pastebin.com', 'deb.example', 'x.s3.amazonaws.com', '10.1.2.3', 'localhost'];
const CLIENTS = ['10.0.8.7', '10.0.9.1', '192.168.1.20', '2001:db8::5'];
const GROUPS: string[][] = [[], ['ci'], ['ci', 'build'], ['office']];
const USERS = [null, 'alice', 'bob'];

function fixture(count: number): FixtureRecord[] {
  const random = seeded(19);
  const pick = <X>(list: readonly X[]): X => list[Math.floor(random() * list.length)];
  return Array.from({ length: count }, (_, i) => {
    const decision = random() < 0.3 ? 'deny' : 'allow';
    return {
      at: T - 3 * DAY + Math.floor((i / count) * 3 * DAY) + Math.floor(random() * 5 * MINUTE),
      host: random() < 0.03 ? null : pick(HOSTS),
      clientIp: pick(CLIENTS),
      clients: pick(GROUPS),
      decision,
      wouldDeny: decision === 'allow' && random() < 0.1,
      status: decision === 'deny' ? 403 : pick([200, 204, 502, null]),
      kind: random() < 0.5 ? 'connect' : 'http',
      path: random() < 0.5 ? `/p/${Math.floor(random() * 50)}` : null,
      rule: decision === 'deny' ? pick(['(default)', 'deny-paste']) : pick(['github', 'apt']),
      user: pick(USERS),
      error: random() < 0.05 ? 'Upstream_Reset' : null,
    } satisfies FixtureRecord;
  });
}

const RECORDS = fixture(600);

/** The oracle's view of a record: what the facets count. */
function statusOf(r: FixtureRecord): number | null {
  return r.status === undefined ? (r.decision === 'deny' ? 403 : 200) : r.status;
}

function expectedFacet(records: FixtureRecord[], values: (r: FixtureRecord) => Array<string | null>, limit = 10): Array<{ value: string; count: number }> {
  const counts = new Map<string, number>();
  for (const r of records) for (const v of new Set(values(r))) if (v !== null) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts]
    .sort(([a, x], [b, y]) => y - x || (a < b ? -1 : a > b ? 1 : 0))
    .slice(0, limit)
    .map(([value, count]) => ({ value, count }));
}

const FIELDS: Record<string, (r: FixtureRecord) => Array<string | null>> = {
  host: (r) => [r.host ?? null],
  domain: (r) => [r.host == null ? null : registrableDomain(r.host)],
  client_ip: (r) => [r.clientIp ?? null],
  clients: (r) => r.clients ?? [],
  rule: (r) => [r.rule ?? null],
  decision: (r) => [r.decision ?? 'allow'],
  status: (r) => [statusOf(r) === null ? null : String(statusOf(r))],
  user: (r) => [r.user ?? null],
  node: () => [FIXTURE_NODE],
};

/** Filter cases: a query string and the same filter as a predicate on the fixture. */
const CASES: Array<[string, (r: FixtureRecord) => boolean]> = [
  ['', () => true],
  ['host=github.com', (r) => r.host === 'github.com'],
  ['host=%2A%2A.pastebin.com', (r) => r.host === 'pastebin.com' || r.host === 'a.b.pastebin.com'],
  ['not.host=%2A%2A.pastebin.com', (r) => r.host !== 'pastebin.com' && r.host !== 'a.b.pastebin.com'],
  ['not.decision=deny', (r) => r.decision !== 'deny'],
  ['decision=allow&not.client=ci', (r) => r.decision === 'allow' && !(r.clients ?? []).includes('ci')],
  ['not.client=10.0.8.0%2F24', (r) => !(r.clientIp ?? '').startsWith('10.0.8.')],
  ['client=ci&not.status=4xx', (r) => (r.clients ?? []).includes('ci') && !(statusOf(r) !== null && (statusOf(r) as number) >= 400 && (statusOf(r) as number) < 500)],
  ['not.q=github', (r) => ![r.host, r.path, r.rule, r.error, r.clientIp].some((v) => v != null && v.toLowerCase().includes('github'))
    && !((r.reason ?? (r.decision === 'deny' ? 'no rule matched' : 'matched rule')).toLowerCase().includes('github'))],
  ['rule=deny-paste', (r) => r.rule === 'deny-paste'],
  ['not.rule=github&user=alice', (r) => r.rule !== 'github' && r.user === 'alice'],
  ['not.user=alice', (r) => r.user !== 'alice'],
  ['not.would_deny=true', (r) => r.wouldDeny !== true],
  ['since=1d&not.host=github.com', (r) => r.at >= T - DAY && r.host !== 'github.com'],
  ['not.node=node-a', () => false],
  ['not.node=elsewhere', () => true],
];

const pgOff = postgresTestsOff();

describe.each(ENGINES.filter((e) => e === 'sqlite' || !pgOff))('incident console queries on %s', (engine: Engine) => {
  let history: History;
  let app: FastifyInstance;

  beforeAll(async () => {
    history = await openHistory(engine, `tollgate-facets-${engine}-`);
    for (let i = 0; i < RECORDS.length; i += 200) await history.write(RECORDS.slice(i, i + 200));
    app = buildAdminApp({ reader: history.reader, ready: () => ({ ok: true, detail: {} }), clock: () => NOW });
  });
  afterAll(async () => {
    await app?.close();
    await history?.cleanup();
  });

  async function get<X>(url: string): Promise<X> {
    const res = await app.inject({ url });
    expect([url, res.statusCode, res.statusCode === 200 ? '' : res.body]).toEqual([url, 200, '']);
    return res.json() as X;
  }

  test.each(CASES)('facets for "%s" are the exact counts of the matching records', async (query, keep) => {
    const fields = Object.keys(FIELDS).join(',');
    const answer = await get<FacetsAnswer>(`/api/requests/facets?fields=${fields}&limit=100${query === '' ? '' : `&${query}`}`);
    const matching = RECORDS.filter(keep);
    expect(answer.total).toBe(matching.length);
    expect(answer.total_exact).toBe(true);
    expect(answer.counts_exact).toBe(true);
    for (const [field, values] of Object.entries(FIELDS)) {
      expect([field, answer.facets[field as keyof typeof answer.facets]]).toEqual([field, expectedFacet(matching, values, 100)]);
    }
  });

  test.each(CASES)('/api/requests and the export honour "%s"', async (query, keep) => {
    const page = await get<RequestPage>(`/api/requests?limit=1000${query === '' ? '' : `&${query}`}`);
    expect(page.items.length).toBe(RECORDS.filter(keep).length);
    const res = await app.inject({ url: `/api/requests/export?format=ndjson${query === '' ? '' : `&${query}`}` });
    expect(res.statusCode).toBe(200);
    expect(res.body.split('\n').filter((l) => l !== '').length).toBe(RECORDS.filter(keep).length);
  });

  test('the default limit is 10 values, limit= up to 100, unknown fields and limits are refused', async () => {
    const answer = await get<FacetsAnswer>('/api/requests/facets?fields=host,client_ip');
    expect(answer.facets.host).toEqual(expectedFacet(RECORDS, FIELDS.host, 10).slice(0, 10));
    expect(answer.facets.host?.length).toBeLessThanOrEqual(10);
    expect(Object.keys(answer.facets).sort()).toEqual(['client_ip', 'host']);
    expect((await app.inject({ url: '/api/requests/facets?fields=host&limit=3' })).json().facets.host).toHaveLength(3);
    for (const bad of ['fields=hostname', 'fields=', 'fields=host&limit=101', '', 'fields=host&not.since=1h', 'fields=host&not.status=7xx']) {
      const res = await app.inject({ url: `/api/requests/facets?${bad}` });
      expect([bad, res.statusCode]).toEqual([bad, 400]);
      expect(res.json().error).toEqual(expect.any(String));
    }
    expect((await app.inject({ url: '/api/requests/facets?fields=host&not.status=7xx' })).json().error).toMatch(/^not\.status/);
  });

  test('a tally past its record cap says so: at least N, counts of the newest sampled', async () => {
    const capped = buildAdminApp({
      reader: history.reader, ready: () => ({ ok: true, detail: {} }), clock: () => NOW,
      facetBudget: () => ({ tallyMs: 10_000, countMs: 10_000, sampleCap: 50, firstSliceIds: 16 }),
    });
    try {
      const res = await capped.inject({ url: '/api/requests/facets?fields=decision' });
      const answer = res.json() as FacetsAnswer;
      // Batches are whole: at least the cap, fewer than all.
      expect(answer.sampled).toBeGreaterThanOrEqual(50);
      expect(answer.sampled).toBeLessThan(RECORDS.length);
      expect(answer.counts_exact).toBe(false);
      expect(answer.sampled_since).toEqual(expect.any(String));
      // The rest was counted in full: the total is exact though the counts are not.
      expect(answer).toMatchObject({ total: RECORDS.length, total_exact: true });
      const sum = (answer.facets.decision ?? []).reduce((n, v) => n + v.count, 0);
      expect(sum).toBe(answer.sampled);
      const starved = buildAdminApp({
        reader: history.reader, ready: () => ({ ok: true, detail: {} }), clock: () => NOW,
        facetBudget: () => ({ tallyMs: 0, countMs: 0, sampleCap: 1, firstSliceIds: 16 }),
      });
      const partial = (await starved.inject({ url: '/api/requests/facets?fields=decision' })).json() as FacetsAnswer;
      await starved.close();
      expect(partial.total).toBeLessThanOrEqual(RECORDS.length);
      expect(partial.total).toBeGreaterThanOrEqual(partial.sampled);
      if (!partial.total_exact) expect(partial.total).toBeLessThan(RECORDS.length);
    } finally {
      await capped.close();
    }
  });

  test('/api/stats takes the /api/requests filters and counts only the matching records', async () => {
    const cases: Array<[string, (r: FixtureRecord) => boolean]> = [
      ['host=pastebin.com', (r) => r.host === 'pastebin.com'],
      ['not.decision=allow&client=ci', (r) => r.decision === 'deny' && (r.clients ?? []).includes('ci')],
      ['not.host=%2A%2A.github.com', (r) => r.host !== 'github.com' && r.host !== 'api.github.com'],
    ];
    for (const [query, keep] of cases) {
      const stats = await get<Stats>(`/api/stats?since=2d&${query}`);
      const matching = RECORDS.filter((r) => r.at >= T - 2 * DAY && r.at < T && keep(r));
      expect([query, stats.total]).toEqual([query, matching.length]);
      expect(stats.denied).toBe(matching.filter((r) => r.decision === 'deny').length);
      expect(stats.would_deny).toBe(matching.filter((r) => r.wouldDeny === true).length);
      expect(stats.series.reduce((n, p) => n + p.allowed + p.denied, 0)).toBe(matching.length);
      expect(stats.top_hosts).toEqual(expectedFacet(matching, FIELDS.host).map(({ value, count }) => ({ host: value, count })));
      expect(stats.top_client_groups).toEqual(expectedFacet(matching, FIELDS.clients).map(({ value, count }) => ({ client: value, count })));
      expect(stats.top_denied_hosts).toEqual(expectedFacet(matching.filter((r) => r.decision === 'deny'), FIELDS.host).map(({ value, count }) => ({ host: value, count })));
    }
    // Unfiltered, the answer is the rollups' and the same as before.
    const whole = await get<Stats>('/api/stats?since=2d');
    expect(whole.total).toBe(RECORDS.filter((r) => r.at >= T - 2 * DAY && r.at < T).length);
    expect((await app.inject({ url: '/api/stats?hots=x' })).statusCode).toBe(400);
  });

  test('a NUL byte in q searches for it instead of switching the search off (API, export, facets)', async () => {
    const page = await get<RequestPage>('/api/requests?q=%00zzzz');
    expect(page.items).toEqual([]);
    const exported = await app.inject({ url: '/api/requests/export?format=ndjson&q=%00zzzz' });
    expect(exported.body).toBe('');
    const facets = await get<FacetsAnswer>('/api/requests/facets?fields=host&q=%00zzzz');
    expect(facets).toMatchObject({ total: 0, total_exact: true });
    // Negated: nothing holds the NUL, so nothing is left out.
    const notPage = await get<RequestPage>('/api/requests?limit=1000&not.q=%00zzzz');
    expect(notPage.items.length).toBe(RECORDS.length);
    const stats = await get<Stats>('/api/stats?since=7d&q=%00github');
    expect(stats.total).toBe(0);
  });

  test('the registrable domain of hosts, IP literals as themselves', () => {
    expect(registrableDomain('a.b.pastebin.com')).toBe('pastebin.com');
    expect(registrableDomain('x.s3.amazonaws.com')).toBe('x.s3.amazonaws.com');
    // The private section counts: githubusercontent.com is a suffix there.
    expect(registrableDomain('raw.githubusercontent.com')).toBe('raw.githubusercontent.com');
    expect(registrableDomain('objects.github.com')).toBe('github.com');
    expect(registrableDomain('10.1.2.3')).toBe('10.1.2.3');
    expect(registrableDomain('[2001:db8::1]')).toBe('[2001:db8::1]');
    expect(registrableDomain('localhost')).toBe('localhost');
    void HOUR;
  });
});
