import os from 'node:os';
import type { FastifyInstance } from 'fastify';
import { buildAdminApp } from '../src/admin/app';
import type { AuditRecordJson } from '../src/audit/record-types';
import type { NodesPage } from '../src/audit/reader';
import { DAY, HOUR, MINUTE, NOW, seeded, tempStore } from './helpers/admin-fixture';
import type { FixtureRecord } from './helpers/admin-fixture';
import { FIXTURE_NODE, openHistory, pgHistory } from './helpers/admin-engines';
import type { History, PgHistory } from './helpers/admin-engines';
import { describePg } from './helpers/postgres';

const T = NOW.getTime();
const HOSTS = ['github.com', 'api.github.com', 'raw.githubusercontent.com', 'pastebin.com', 'deb.example', 'Mixed.Example', '10.1.2.3', '[::1]'];
const CLIENTS = ['10.0.8.7', '10.0.9.1', '192.168.1.20', '::ffff:10.0.8.9', '2001:db8::5'];
const GROUPS = [[], ['ci'], ['ci', 'build'], ['office']];
const STATUSES = [200, 204, 301, 403, 404, 502, null];

/** Records spread over 9 days, written out of start-time order (ids and times nearly agree). */
function fixture(count: number): FixtureRecord[] {
  const random = seeded(15);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)];
  return Array.from({ length: count }, (_, i) => {
    const decision = random() < 0.3 ? 'deny' : 'allow';
    return {
      at: T - 9 * DAY + Math.floor((i / count) * 9 * DAY) + Math.floor(random() * 20 * MINUTE),
      host: random() < 0.03 ? null : pick(HOSTS),
      clientIp: pick(CLIENTS),
      clients: pick(GROUPS),
      decision,
      wouldDeny: decision === 'allow' && random() < 0.1,
      status: decision === 'deny' ? 403 : pick(STATUSES),
      kind: random() < 0.5 ? 'connect' : 'http',
      path: random() < 0.5 ? `/p/${Math.floor(random() * 50)}` : null,
      rule: decision === 'deny' ? pick(['(default)', 'deny-paste', '(guard)']) : pick(['github', 'apt']),
      error: random() < 0.05 ? 'Upstream_Reset' : null,
    } satisfies FixtureRecord;
  });
}

/** A record without its id: the one field that differs between engines. */
function content(record: AuditRecordJson): Omit<AuditRecordJson, 'id'> {
  const { id: _id, ...rest } = record;
  return rest;
}

const QUERIES = [
  '', 'host=github.com', 'host=%2A%2A.github.com', 'host=%2A.example', 'host=10.0.0.0%2F8', 'host=nothing.example',
  'client=ci', 'client=build', 'client=10.0.8.0%2F24', 'client=10.0.8.9', 'client=2001%3Adb8%3A%3A%2F32',
  'decision=deny', 'decision=allow&would_deny=true', 'would_deny=false', 'status=4xx', 'status=204', 'since=2d',
  'since=5d&until=1d', 'q=github', 'q=UPSTREAM', 'q=_r', 'q=%25', 'q=%2Fp%2F1', 'node=node-a', 'node=elsewhere',
  'host=github.com&client=ci&since=7d&status=2xx', 'since=2025-02-24T10:20:30.5Z&until=2025-02-27T13:40:15Z',
  'decision=deny&since=2025-02-26T21:58:30.5Z&until=2025-02-27T02:04:10Z', 'host=pastebin.com&until=2025-02-25T07:13:00Z',
];

describePg('the admin API answers the same on SQLite and PostgreSQL', () => {
  const apps: Record<string, FastifyInstance> = {};
  const histories: History[] = [];
  let newest = 0;

  beforeAll(async () => {
    const records = fixture(900);
    newest = records.length;
    for (const engine of ['sqlite', 'postgres'] as const) {
      const history = await openHistory(engine, `tollgate-same-${engine}-`);
      // Several writes: several ship batches for PostgreSQL.
      for (let i = 0; i < records.length; i += 250) await history.write(records.slice(i, i + 250));
      histories.push(history);
      apps[engine] = buildAdminApp({ reader: history.reader, ready: () => ({ ok: true, detail: {} }), clock: () => NOW });
    }
  });
  afterAll(async () => {
    for (const app of Object.values(apps)) await app.close();
    for (const history of histories) await history.cleanup();
  });

  async function both(url: string): Promise<[unknown, unknown]> {
    const [a, b] = await Promise.all([apps.sqlite.inject({ url }), apps.postgres.inject({ url })]);
    expect([url, b.statusCode]).toEqual([url, a.statusCode]);
    return [a.json(), b.json()];
  }

  /** Every page of a filter, by cursor, as contents; and the page sizes. */
  async function allPages(engine: string, query: string, limit: number): Promise<{ records: unknown[]; sizes: number[] }> {
    const records: unknown[] = [];
    const sizes: number[] = [];
    let cursor: string | null = null;
    do {
      const url: string = `/api/requests?limit=${limit}&${query}${cursor === null ? '' : `&cursor=${cursor}`}`;
      const res: { statusCode: number; json<T>(): T } = await apps[engine].inject({ url });
      expect([url, res.statusCode]).toEqual([url, 200]);
      const page: { items: AuditRecordJson[]; next_cursor: string | null; partial: boolean } = res.json<{ items: AuditRecordJson[]; next_cursor: string | null; partial: boolean }>();
      expect(page.partial).toBe(false);
      records.push(...page.items.map(content));
      sizes.push(page.items.length);
      cursor = page.next_cursor;
    } while (cursor !== null);
    return { records, sizes };
  }

  test.each(QUERIES)('every page of ?%s, by cursor', async (query) => {
    const [lite, pg] = await Promise.all([allPages('sqlite', query, 37), allPages('postgres', query, 37)]);
    expect(pg.sizes).toEqual(lite.sizes);
    expect(pg.records).toEqual(lite.records);
    if (!['node=elsewhere', 'host=nothing.example', 'q=%25'].includes(query)) expect(lite.records.length).toBeGreaterThan(0);
  });

  test.each(QUERIES)('the export of ?%s, as NDJSON and CSV', async (query) => {
    const lines = async (engine: string, format: string): Promise<string[]> =>
      (await apps[engine].inject({ url: `/api/requests/export?format=${format}&${query}` })).body.split(/\r?\n/).filter((l) => l !== '');
    const [liteJson, pgJson] = await Promise.all([lines('sqlite', 'ndjson'), lines('postgres', 'ndjson')]);
    expect(pgJson.map((l) => content(JSON.parse(l) as AuditRecordJson))).toEqual(liteJson.map((l) => content(JSON.parse(l) as AuditRecordJson)));
    const [liteCsv, pgCsv] = await Promise.all([lines('sqlite', 'csv'), lines('postgres', 'csv')]);
    // The id column first: drop it.
    const noId = (line: string): string => line.slice(line.indexOf(',') + 1);
    expect(pgCsv.map(noId)).toEqual(liteCsv.map(noId));
  });

  test('a live view: after_id and newest_id', async () => {
    const [lite, pg] = (await both('/api/requests?limit=5')) as Array<{ newest_id: number; items: AuditRecordJson[] }>;
    expect(lite.newest_id).toBe(newest);
    expect(pg.items.map(content)).toEqual(lite.items.map(content));
    const after = async (engine: string, id: number) =>
      (await apps[engine].inject({ url: `/api/requests?after_id=${id}&limit=1000` })).json<{ items: AuditRecordJson[] }>().items.map(content);
    expect(await after('postgres', pg.newest_id - 10)).toEqual(await after('sqlite', lite.newest_id - 10));
    expect(await after('postgres', pg.newest_id - 10)).toHaveLength(10);
  });

  test('one record by id', async () => {
    const [lite, pg] = (await both('/api/requests?limit=1&host=pastebin.com')) as Array<{ items: AuditRecordJson[] }>;
    const one = async (engine: string, id: number) => (await apps[engine].inject({ url: `/api/requests/${id}` })).json<AuditRecordJson>();
    expect(content(await one('postgres', pg.items[0].id))).toEqual(content(await one('sqlite', lite.items[0].id)));
    expect((await apps.postgres.inject({ url: '/api/requests/99999999' })).statusCode).toBe(404);
  });

  test.each([
    '', 'since=7d', 'since=3d&until=2d', 'since=2025-02-25T10:00:30Z&until=2025-02-25T10:17:45.5Z', 'since=30d&top=3', 'since=1h',
    // Mid-hour and mid-minute edges: whole hours from the rollups, the edge hours from the records.
    'since=2025-02-24T10:20:30.5Z&until=2025-02-27T13:40:15Z&top=50', 'since=2025-02-25T10:20:00Z&until=2025-02-25T11:40:00Z&top=50',
    'since=2025-02-25T09:00:00Z&until=2025-02-25T12:00:00Z&top=50', 'since=2025-02-25T10:05:00Z&until=2025-02-25T10:55:00.5Z&top=50',
    'since=2025-02-22T03:59:59.999Z&until=2025-02-28T20:00:00.001Z&top=50',
  ])(
    'stats ?%s',
    async (query) => {
      const [lite, pg] = await both(`/api/stats?${query}`);
      expect(pg).toEqual(lite);
      expect((lite as { total: number }).total).toBeGreaterThanOrEqual(0);
    },
  );

  test.each(['since=9d', 'since=3d', 'since=10d&by=client_host', 'since=10d&limit=3'])('first-seen ?%s', async (query) => {
    const [lite, pg] = (await both(`/api/first-seen?${query}`)) as Array<{ items: Array<{ first_id: number }> }>;
    const noIds = (page: { items: Array<{ first_id: number }> }) => ({ ...page, items: page.items.map(({ first_id: _f, ...rest }) => rest) });
    expect(noIds(pg)).toEqual(noIds(lite));
    if (query !== 'since=3d') expect(lite.items.length).toBeGreaterThan(0);
  });
});

describe('node on a single SQLite store', () => {
  let s: History;
  let app: FastifyInstance;
  beforeAll(async () => {
    s = await openHistory('sqlite', 'tollgate-node-');
    await s.write([{ at: T - HOUR }, { at: T - MINUTE, decision: 'deny' }]);
    app = buildAdminApp({ reader: s.reader, ready: () => ({ ok: true, detail: {} }), clock: () => NOW });
  });
  afterAll(async () => {
    await app.close();
    await s.cleanup();
  });

  it('is on every record; node= matches all or nothing', async () => {
    const all = (await app.inject({ url: '/api/requests' })).json<{ items: AuditRecordJson[] }>();
    expect(all.items.map((r) => r.node)).toEqual([FIXTURE_NODE, FIXTURE_NODE]);
    expect((await app.inject({ url: `/api/requests?node=${FIXTURE_NODE}` })).json<{ items: unknown[] }>().items).toHaveLength(2);
    expect((await app.inject({ url: '/api/requests?node=other' })).json()).toEqual({ items: [], next_cursor: null, newest_id: 2, partial: false });
    expect((await app.inject({ url: '/api/requests/export?format=ndjson&node=other' })).body).toBe('');
    expect((await app.inject({ url: '/api/requests?node=' })).statusCode).toBe(400);
  });

  it('lists one node: this one', async () => {
    const nodes = (await app.inject({ url: '/api/nodes' })).json<NodesPage>();
    expect(nodes).toEqual({
      engine: 'sqlite', common_policy_version: 'sha256:fixture',
      nodes: [{
        node: FIXTURE_NODE, store_id: null, policy_version: 'sha256:fixture', last_contact: NOW.toISOString(),
        last_record: new Date(T - MINUTE).toISOString(), shipped_entries: null, duplicate_name: false, policy_differs: false, stale: false,
      }],
    });
  });

  it('defaults to the host name', async () => {
    const store = tempStore('tollgate-node-default-');
    store.write([{ at: T - HOUR }]);
    const bare = buildAdminApp({ store: store.store, ready: () => ({ ok: true, detail: {} }) });
    try {
      expect((await bare.inject({ url: '/api/requests?limit=1' })).json<{ items: AuditRecordJson[] }>().items[0].node).toBe(os.hostname());
    } finally {
      await bare.close();
      store.cleanup();
    }
  });
});

describePg('nodes of the shared history', () => {
  let h: PgHistory;
  let app: FastifyInstance;
  beforeAll(async () => {
    h = await pgHistory('tollgate-nodes-', 'node-a');
    await h.write([{ at: T - HOUR, host: 'a.example' }]);
    await h.replica('node-b').write([{ at: T - 30 * MINUTE, host: 'b.example' }, { at: T - 20 * MINUTE, host: 'b.example' }]);
    await h.replica('node-b').write([{ at: T - 10 * MINUTE, host: 'c.example' }]);
    await h.replica('node-c', 'sha256:other').write([{ at: T - 5 * MINUTE, host: 'c.example' }]);
    app = buildAdminApp({ reader: h.reader, ready: () => ({ ok: true, detail: {} }), clock: () => NOW });
  });
  afterAll(async () => {
    await app.close();
    await h.cleanup();
  });

  it('holds the records of every node, each with its name, filterable by node=', async () => {
    const all = (await app.inject({ url: '/api/requests' })).json<{ items: AuditRecordJson[] }>();
    expect(all.items.map((r) => [r.node, r.host])).toEqual([
      ['node-c', 'c.example'], ['node-b', 'c.example'], ['node-b', 'b.example'], ['node-b', 'b.example'], ['node-a', 'a.example'],
    ]);
    const b = (await app.inject({ url: '/api/requests?node=node-b&host=b.example' })).json<{ items: AuditRecordJson[] }>();
    expect(b.items).toHaveLength(2);
    const csv = (await app.inject({ url: '/api/requests/export?format=csv&node=node-c' })).body.split('\r\n');
    expect(csv[0].endsWith(',policy_version,node')).toBe(true);
    expect(csv[1].endsWith(',sha256:fixture,node-c')).toBe(true);
    expect(csv).toHaveLength(3);
  });

  it('flags a node name claimed by two stores and a policy that differs from the others', async () => {
    const page = (await app.inject({ url: '/api/nodes' })).json<NodesPage>();
    expect(page.engine).toBe('postgres');
    expect(page.common_policy_version).toBe('sha256:fixture');
    const byName = page.nodes.map((n) => [n.node, n.duplicate_name, n.policy_differs, n.last_record]);
    // Two stores of one name come in store_id order, which is random here.
    expect(byName.sort((x, y) => String(x[0] + String(x[3])).localeCompare(String(y[0]) + String(y[3])))).toEqual([
      ['node-a', false, false, new Date(T - HOUR).toISOString()],
      ['node-b', true, false, new Date(T - 20 * MINUTE).toISOString()],
      ['node-b', true, false, new Date(T - 10 * MINUTE).toISOString()],
      ['node-c', false, true, new Date(T - 5 * MINUTE).toISOString()],
    ]);
    expect(page.nodes.map((n) => n.node)).toEqual(['node-a', 'node-b', 'node-b', 'node-c']);
    expect(page.nodes.every((n) => typeof n.store_id === 'string' && typeof n.last_contact === 'string' && (n.shipped_entries ?? 0) > 0)).toBe(true);
  });
});
