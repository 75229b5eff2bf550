import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildAdminApp, SECURITY_HEADERS } from '../src/admin/app';
import type { PolicySnapshot } from '../src/admin/app';
import { AUDIT_RECORD_FIELDS } from '../src/audit/query';
import type { AuditRecordJson } from '../src/audit/record-types';
import { createMetrics } from '../src/metrics';
import type { ProxyMetrics } from '../src/metrics';
import { loadPolicy } from '../src/policy/load';
import { DAY, HOUR, MINUTE, NOW } from './helpers/admin-fixture';
import { ENGINES, FIXTURE_NODE, openHistory } from './helpers/admin-engines';
import type { Engine, History } from './helpers/admin-engines';
import { describePg } from './helpers/postgres';

const T = NOW.getTime();

const POLICY = `version: 1
settings:
  default: deny
  mode: enforce
clients:
  ci:
    sources: [10.0.8.0/22]
rules:
  - name: deny-paste
    action: deny
    hosts: [pastebin.com]
  - name: github
    action: allow
    clients: [ci]
    hosts: [github.com, "*.github.com"]
    ports: [443, 8000-8999]
    mode: report
  - name: apt
    action: allow
    hosts: [deb.example]
    methods: [GET, HEAD]
    paths: ["/debian/**"]
    expires: 2025-01-31
  - name: unused
    action: allow
    hosts: [nobody.example]
`;

/** The whole suite once per engine: the same records, the same answers (issue 15, "one history"). */
function adminApiSuite(engine: Engine): void {
  let s: History;
  let app: FastifyInstance;
  let metrics: ProxyMetrics;
  let snapshot: PolicySnapshot | undefined;

  beforeAll(async () => {
    s = await openHistory(engine, 'tollgate-api-');
    fs.writeFileSync(path.join(s.dir, 'policy.yaml'), POLICY);
    const loaded = loadPolicy(s.dir);
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
    snapshot = { policy: loaded.policy, lastReload: { ok: false, at: NOW.toISOString(), version: loaded.policy.version, problems: ['policy.yaml:3: bad'] } };
    await s.write([
      { at: T - 8 * DAY, host: 'github.com', rule: 'github' },
      { at: T - 2 * HOUR, host: 'github.com', rule: 'github', clients: ['ci'] },
      { at: T - HOUR, host: 'api.github.com', rule: 'github', clients: ['ci'], wouldDeny: true },
      { at: T - 30 * MINUTE, host: 'pastebin.com', rule: 'deny-paste', decision: 'deny' },
      { at: T - 20 * MINUTE, host: 'evil.example', rule: '(default)', decision: 'deny' },
      { at: T - 10 * MINUTE, host: '=HYPERLINK("x")', rule: '(default)', decision: 'deny', reason: '+cmd|calc', kind: 'http', path: '-a,b\tc' },
      { at: T - 5 * MINUTE, host: '@evil', rule: '(guard)', decision: 'deny', error: '\tboom' },
    ]);
    metrics = createMetrics();
    app = buildAdminApp({
      reader: s.reader, ready: () => ({ ok: true, detail: {} }), clock: () => NOW, metrics, policy: () => {
        if (snapshot === undefined) throw new Error('no snapshot');
        return snapshot;
      },
    });
    await app.ready();
  });
  afterAll(async () => {
    await app.close();
    await s.cleanup();
  });

  const get = (url: string) => app.inject({ url });

  describe('GET /api/requests filters through the API', () => {
    it('filters by host glob, decision and time', async () => {
      const res = await get(`/api/requests?host=${encodeURIComponent('**.github.com')}&since=1d`);
      expect(res.statusCode).toBe(200);
      expect(res.json<{ items: AuditRecordJson[] }>().items.map((r) => r.host)).toEqual(['api.github.com', 'github.com']);
      const denied = (await get('/api/requests?decision=deny&limit=2')).json<{ items: AuditRecordJson[]; next_cursor: string | null }>();
      expect(denied.items.map((r) => r.host)).toEqual(['@evil', '=HYPERLINK("x")']);
      expect(denied.next_cursor).toEqual(expect.any(String));
    });

    test.each([
      ['host=http%3A%2F%2Fx', 'host: host "http://x" is a URL; write the host only: "x"'],
      ['status=6xx', 'status must be a code from 100 to 599 or a class such as 4xx'],
      ['decision=maybe', 'querystring/decision must be equal to one of the allowed values'],
      ['since=yesterday', expect.stringMatching(/^since must be an ISO-8601 time/)],
      ['since=1h&until=2h', 'since must be earlier than until'],
      ['client=%21', 'client must be a client group name, an IP address or a CIDR range'],
      ['hots=x', 'querystring parameter "hots" is not supported'],
      ['host=a&host=b', expect.stringMatching(/querystring\/host must be string/)],
    ])('answers %s with 400 and a clear message', async (query, message) => {
      const res = await get(`/api/requests?${query}`);
      expect(res.statusCode).toBe(400);
      expect(res.json()).toEqual({ error: message });
    });
  });

  function csvLines(body: string): string[] {
    return body.split('\r\n').filter((line) => line !== '');
  }

  describe('GET /api/requests/export', () => {
    it('streams CSV with every SPEC §4 field and defused formula cells', async () => {
      const res = await get('/api/requests/export?format=csv&decision=deny');
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toBe('text/csv; charset=utf-8');
      expect(res.headers['content-disposition']).toBe('attachment; filename="tollgate-requests-20250301T120000Z.csv"');
      expect(res.headers['cache-control']).toBe('no-store');
      const lines = csvLines(res.body);
      expect(lines[0]).toBe(AUDIT_RECORD_FIELDS.join(','));
      expect(lines).toHaveLength(1 + 4);
      expect(res.body).toContain(`,"'=HYPERLINK(""x"")",`);
      expect(res.body).toContain(`,'+cmd|calc,`);
      expect(res.body).toContain(`"'-a,b\tc"`);
      expect(res.body).toContain(`,'@evil,`);
      expect(res.body).toContain(`,'\tboom,`);
      // Numbers and safe text are untouched; null is an empty cell; would_deny is true/false.
      expect(lines[1]).toMatch(/,403,10,20,/);
      expect(lines[1]).toMatch(/,deny,false,/);
    });

    it('streams NDJSON: one record per line, as many as the filter matches', async () => {
      const res = await get('/api/requests/export?format=ndjson&host=github.com');
      expect(res.headers['content-type']).toBe('application/x-ndjson; charset=utf-8');
      expect(res.headers['content-disposition']).toMatch(/^attachment; filename="tollgate-requests-.*\.ndjson"$/);
      const records = res.body.trimEnd().split('\n').map((line) => JSON.parse(line) as AuditRecordJson);
      expect(records.map((r) => r.host)).toEqual(['github.com', 'github.com']);
      expect(Object.keys(records[0])).toEqual([...AUDIT_RECORD_FIELDS]);
    });

    it('matches the list for every filter, across export batches', async () => {
      const many = await openHistory(engine, 'tollgate-api-export-');
      const big = buildAdminApp({ reader: many.reader, ready: () => ({ ok: true, detail: {} }), clock: () => NOW });
      try {
        await many.write(Array.from({ length: 1234 }, (_, i) => ({ at: T - DAY + i * 1000, host: `h${i % 7}.example`, decision: i % 4 === 0 ? 'deny' : 'allow' })));
        for (const query of ['host=%2A%2A.example', 'decision=deny', 'status=403&since=2d', '']) {
          const url = (base: string, ...params: string[]): string => `${base}?${[...params, query].filter((p) => p !== '').join('&')}`;
          const ndjson = (await big.inject({ url: url('/api/requests/export', 'format=ndjson') })).body.trimEnd().split('\n').filter((l) => l !== '');
          const csv = csvLines((await big.inject({ url: url('/api/requests/export') })).body).slice(1);
          let listed = 0;
          let cursor: string | null = null;
          do {
            const page: { items: unknown[]; next_cursor: string | null } = (
              await big.inject({ url: url('/api/requests', 'limit=1000', cursor === null ? '' : `cursor=${cursor}`) })
            ).json();
            listed += page.items.length;
            cursor = page.next_cursor;
          } while (cursor !== null);
          expect([ndjson.length, csv.length]).toEqual([listed, listed]);
          expect(listed).toBeGreaterThan(0);
        }
      } finally {
        await big.close();
        await many.cleanup();
      }
    });

    it('rejects an unknown format and list-only parameters', async () => {
      expect((await get('/api/requests/export?format=xlsx')).statusCode).toBe(400);
      expect((await get('/api/requests/export?cursor=abc')).json()).toEqual({ error: 'querystring parameter "cursor" is not supported' });
    });
  });

  describe('GET /api/stats and /api/first-seen', () => {
    it('aggregates the last 24 hours by default', async () => {
      const stats = (await get('/api/stats')).json<Record<string, unknown>>();
      expect(stats).toMatchObject({
        since: new Date(T - DAY).toISOString(), until: NOW.toISOString(), total: 6, allowed: 2, denied: 4, would_deny: 1, bucket_seconds: 900,
        top_hosts: ['=HYPERLINK("x")', '@evil', 'api.github.com', 'evil.example', 'github.com', 'pastebin.com'].map((host) => ({ host, count: 1 })),
        top_client_groups: [{ client: 'ci', count: 2 }],
      });
      expect(stats.series).toHaveLength(96);
    });

    it('validates its window', async () => {
      expect((await get('/api/stats?since=2h&until=3h')).statusCode).toBe(400);
      expect((await get('/api/stats?since=1h&top=0')).statusCode).toBe(400);
      expect((await get('/api/stats?since=-1h')).statusCode).toBe(400);
    });

    it('lists first-seen destinations', async () => {
      const res = (await get('/api/first-seen?since=1d')).json<{ items: Array<{ host: string }> }>();
      expect(res.items.map((i) => i.host)).toEqual(['@evil', '=HYPERLINK("x")', 'evil.example', 'pastebin.com', 'api.github.com']);
      expect((await get('/api/first-seen?by=client')).statusCode).toBe(400);
    });
  });

  describe('GET /api/policy', () => {
    it('shows the rules in order with hit counts over 7 days and the last reload', async () => {
      const res = await get('/api/policy');
      expect(res.statusCode).toBe(200);
      const body = res.json<{ rules: Array<Record<string, unknown>> } & Record<string, unknown>>();
      expect(body).toMatchObject({
        version: expect.stringMatching(/^(sha256|git):/),
        files: ['policy.yaml'],
        settings: { default: 'deny', mode: 'enforce', source: 'policy.yaml:3' },
        clients: [{ name: 'ci', source: expect.stringMatching(/^policy.yaml:\d+$/), sources: ['10.0.8.0/22'] }],
        hits_since: new Date(T - 7 * DAY).toISOString(),
        fallbacks: [
          { rule: '(default)', hits: 2, last_hit: new Date(T - 10 * MINUTE).toISOString() },
          { rule: '(guard)', hits: 1, last_hit: new Date(T - 5 * MINUTE).toISOString() },
          { rule: '(sni)', hits: 0, last_hit: null },
        ],
        last_reload: { ok: false, at: NOW.toISOString(), problems: ['policy.yaml:3: bad'] },
      });
      expect(body.rules).toEqual([
        {
          name: 'deny-paste', action: 'deny', source: 'policy.yaml:9', mode: null, effective_mode: 'enforce', clients: null,
          hosts: ['pastebin.com'], ports: ['80', '443'], methods: null, paths: null, expires: null, expired: false,
          hits: 1, last_hit: new Date(T - 30 * MINUTE).toISOString(), unused: false,
        },
        expect.objectContaining({
          name: 'github', mode: 'report', effective_mode: 'report', clients: ['ci'], hosts: ['github.com', '*.github.com'],
          ports: ['443', '8000-8999'], hits: 2, last_hit: new Date(T - HOUR).toISOString(), unused: false,
        }),
        expect.objectContaining({ name: 'apt', methods: ['GET', 'HEAD'], paths: ['/debian/**'], expires: '2025-01-31', expired: true, hits: 0, unused: true }),
        expect.objectContaining({ name: 'unused', hits: 0, last_hit: null, unused: true }),
      ]);
    });

    it('takes the hit window from ?since=', async () => {
      const body = (await get('/api/policy?since=10d')).json<{ rules: Array<{ name: string; hits: number }> }>();
      expect(body.rules.find((r) => r.name === 'github')?.hits).toBe(3);
      expect((await get('/api/policy?since=soon')).statusCode).toBe(400);
    });

    it('is 503 without a policy', async () => {
      const bare = buildAdminApp({ reader: s.reader, ready: () => ({ ok: true, detail: {} }) });
      try {
        expect((await bare.inject({ url: '/api/policy' })).statusCode).toBe(503);
        expect((await bare.inject({ url: '/metrics' })).statusCode).toBe(503);
      } finally {
        await bare.close();
      }
    });
  });

  /**
   * Prometheus text format 0.0.4: `name{label="v",...} value`, # HELP/# TYPE comments. Values are
   * Go floats, NaN and Inf in any case (prom-client writes `Nan` for an empty event-loop sample).
   */
  const SAMPLE_LINE = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.eE+-]+|[Nn]a[Nn]|[+-]Inf)$/;

  describe('GET /metrics', () => {
    it('renders the proxy metrics in the Prometheus text format', async () => {
      metrics.requestDecided('connect', 'allow', false);
      metrics.requestDecided('http', 'allow', true);
      metrics.requestDecided('http', 'deny', false);
      metrics.bytes(100, 2000);
      metrics.upstreamError('connect_refused');
      metrics.auditWrite(0.0004);
      metrics.policyReload(true);
      metrics.policyReload(false);
      metrics.setOpenTunnels(() => 3);
      metrics.setAuditWritable(() => true);
      const res = await get('/metrics');
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
      for (const line of res.body.split('\n').filter((l) => l !== '' && !l.startsWith('#'))) expect(line).toMatch(SAMPLE_LINE);
      for (const expected of [
        'tollgate_requests_total{kind="connect",decision="allow"} 1',
        'tollgate_requests_total{kind="http",decision="deny"} 1',
        'tollgate_requests_total{kind="connect",decision="deny"} 0',
        'tollgate_would_deny_total 1',
        'tollgate_open_tunnels 3',
        'tollgate_bytes_total{direction="up"} 100',
        'tollgate_bytes_total{direction="down"} 2000',
        'tollgate_upstream_errors_total{kind="connect_refused"} 1',
        'tollgate_upstream_errors_total{kind="dns_failed"} 0',
        'tollgate_audit_write_seconds_count 1',
        'tollgate_audit_write_seconds_bucket{le="0.0005"} 1',
        'tollgate_policy_reloads_total{result="ok"} 1',
        'tollgate_policy_reloads_total{result="error"} 1',
        'tollgate_audit_writable 1',
      ]) expect(res.body).toContain(`${expected}\n`);
      expect(res.body).toMatch(/^process_cpu_user_seconds_total /m);
    });

    it('keeps separate registries per instance', async () => {
      const other = createMetrics();
      expect(await other.registry.metrics()).toContain('tollgate_would_deny_total 0\n');
      expect(await other.registry.metrics()).not.toContain('tollgate_audit_writable');
    });
  });

  describe('security headers', () => {
    it.each(['/api/stats', '/api/policy', '/api/first-seen', '/metrics', '/api/requests/export', '/api/requests?status=x', '/login'])(
      'are on %s',
      async (url) => {
        const res = await get(url);
        for (const [name, value] of Object.entries(SECURITY_HEADERS)) expect(res.headers[name]).toBe(value);
      },
    );
  });
}

for (const engine of ENGINES) (engine === 'postgres' ? describePg : describe)(`admin API on ${engine}`, () => adminApiSuite(engine));
