import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildAdminApp, SECURITY_HEADERS } from '../src/admin/app';
import type { ReadinessReport } from '../src/admin/app';
import { openAuditStore } from '../src/audit/store';
import type { AuditStore } from '../src/audit/store';
import { AUDIT_RECORD_FIELDS, encodeCursor } from '../src/audit/query';
import type { AuditOpen, AuditRecordJson } from '../src/audit/record-types';

interface Page {
  items: AuditRecordJson[];
  next_cursor: string | null;
}

function deniedRequest(host: string): AuditOpen {
  return {
    startedAt: new Date('2025-03-01T12:00:00.000Z'),
    clientIp: '127.0.0.1',
    clientPort: 40000,
    clients: [],
    user: null,
    kind: 'http',
    method: 'GET',
    scheme: 'http',
    host,
    port: 80,
    path: '/',
    resolvedIp: null,
    decision: 'deny',
    wouldDeny: false,
    rule: '(default)',
    ruleSource: 'policies/00-settings.yaml:3',
    reason: 'no rule matched',
    policyVersion: 'v1',
  };
}

let dir: string;
let store: AuditStore;
let app: FastifyInstance;
let readiness: ReadinessReport;
let ids: number[];

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-admin-'));
  store = openAuditStore(path.join(dir, 'audit.db'));
  ids = [];
  for (let i = 0; i < 5; i += 1) {
    ids.push(store.record(deniedRequest(`h${i}.example`), {
      endedAt: new Date('2025-03-01T12:00:00.010Z'), status: 403, bytesUp: 0, bytesDown: 0, error: null,
    }));
  }
  readiness = { ok: true, detail: { policy_loaded: true, policy_version: 'v1' } };
  app = buildAdminApp({ store, ready: () => readiness });
  await app.ready();
});

afterEach(async () => {
  await app.close();
  store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('health', () => {
  it('GET /healthz is 200 ok', async () => {
    const res = await app.inject({ method: 'GET', url: '/healthz' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: 'ok' });
  });

  it('GET /readyz is 200 with the detail when ready', async () => {
    const res = await app.inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ ready: true, audit_writable: true, policy_loaded: true, policy_version: 'v1' });
  });

  it('GET /readyz is 503 when the policy is not ready', async () => {
    readiness = { ok: false, detail: { policy_loaded: false, ready: true } };
    const res = await app.inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(503);
    expect(res.json()).toMatchObject({ ready: false, policy_loaded: false });
  });

  it('GET /readyz is 503 when the audit log cannot be written', async () => {
    store.close();
    const res = await app.inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(503);
    expect(res.json()).toMatchObject({ ready: false, audit_writable: false });
  });
});

describe('GET /api/requests', () => {
  it('lists newest first with every SPEC §4 field', async () => {
    const res = await app.inject({ method: 'GET', url: '/api/requests' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.headers['cache-control']).toBe('no-store');
    const page = res.json<Page>();
    expect(page.items.map((r) => r.id)).toEqual([...ids].reverse());
    expect(page.next_cursor).toBeNull();
    expect(Object.keys(page.items[0]).sort()).toEqual([...AUDIT_RECORD_FIELDS].sort());
  });

  it('pages with limit and cursor', async () => {
    const first = (await app.inject({ url: '/api/requests?limit=2' })).json<Page>();
    expect(first.items.map((r) => r.id)).toEqual([ids[4], ids[3]]);
    expect(first.next_cursor).toEqual(expect.any(String));
    const cursor = encodeURIComponent(first.next_cursor ?? '');
    const second = (await app.inject({ url: `/api/requests?limit=2&cursor=${cursor}` })).json<Page>();
    expect(second.items.map((r) => r.id)).toEqual([ids[2], ids[1]]);
    const last = (await app.inject({ url: `/api/requests?limit=2&cursor=${encodeCursor(ids[1])}` })).json<Page>();
    expect(last).toEqual({ items: [expect.objectContaining({ id: ids[0] })], next_cursor: null, partial: false, newest_id: expect.any(Number) });
  });

  it.each([
    ['limit=0'],
    ['limit=1001'],
    ['limit=abc'],
    ['limit=2.5'],
    ['cursor=%21%21'],
    ['cursor='],
    ['hots=example.com'],
    ['host=http://example.com/'],
    ['after_id=-1'],
    ['after_id=abc'],
  ])('rejects %s with 400 and a JSON error', async (query) => {
    const res = await app.inject({ url: `/api/requests?${query}` });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toEqual({ error: expect.any(String) });
  });

  it('answers a search that outlasts its budget with a partial page that says how far it got', async () => {
    const paced = buildAdminApp({ store, ready: () => readiness, searchPace: { firstSliceIds: 2, budgetMs: 0 } });
    try {
      const first = (await paced.inject({ url: '/api/requests?q=no-such-text' })).json<Page>();
      expect(first).toEqual({
        items: [], next_cursor: encodeCursor(ids[3]), partial: true, searched_to_id: ids[3], searched_to: '2025-03-01T12:00:00.000Z',
        newest_id: ids[4],
      });
      const found = (await paced.inject({ url: `/api/requests?q=h1.example&cursor=${first.next_cursor ?? ''}` })).json<Page>();
      // The next two ids: one match, and the search goes on below them.
      expect(found).toEqual(expect.objectContaining({ partial: true, next_cursor: encodeCursor(ids[1]) }));
      expect(found.items.map((r) => r.id)).toEqual([ids[1]]);
      const newer = (await paced.inject({ url: `/api/requests?after_id=${ids[2]}` })).json<Page>();
      expect(newer.items.map((r) => r.id)).toEqual([ids[4], ids[3]]);
      expect(newer.next_cursor).toBeNull();
    } finally {
      await paced.close();
    }
  });

  it('hides the message of a server error', async () => {
    store.close();
    const res = await app.inject({ url: '/api/requests' });
    expect(res.statusCode).toBe(500);
    expect(res.json()).toEqual({ error: 'internal error' });
  });

  it('names an unsupported parameter', async () => {
    const res = await app.inject({ url: '/api/requests?hots=example.com' });
    expect(res.json()).toEqual({ error: 'querystring parameter "hots" is not supported' });
  });

  it('filters by host as policies match it', async () => {
    const res = await app.inject({ url: '/api/requests?host=h2.example' });
    expect(res.json<Page>().items.map((r) => r.id)).toEqual([ids[2]]);
  });
});

describe('GET /api/requests/:id', () => {
  it('returns one record', async () => {
    const res = await app.inject({ url: `/api/requests/${ids[2]}` });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ id: ids[2], host: 'h2.example', decision: 'deny', status: 403 });
  });

  it('is 404 JSON when missing', async () => {
    const res = await app.inject({ url: '/api/requests/999999' });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({ error: 'no request with id 999999' });
  });

  it.each(['abc', '1.5', '-1', '0', '1e3', '99999999999999999999'])('is 400 for id %s', async (id) => {
    const res = await app.inject({ url: `/api/requests/${id}` });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toEqual({ error: 'id must be a positive integer' });
  });
});

describe('UI and headers', () => {
  it('GET / serves the UI with a strict CSP and no inline script', async () => {
    const res = await app.inject({ url: '/' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    // Scripts only from files: the CSP (default-src 'self') would block an inline one anyway.
    expect(res.body).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/i);
    expect(res.headers['content-security-policy']).toMatch(/^default-src 'self'(;|$)/);
  });

  it.each(['/', '/healthz', '/api/requests', '/api/requests/abc', '/no/such/page'])(
    'sets the security headers on %s',
    async (url) => {
      const res = await app.inject({ url });
      for (const [name, value] of Object.entries(SECURITY_HEADERS)) expect(res.headers[name]).toBe(value);
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.headers['referrer-policy']).toBe('no-referrer');
    },
  );

  it('answers unknown routes with 404 JSON', async () => {
    const res = await app.inject({ url: '/no/such/page' });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({ error: 'not found' });
  });
});
