import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildAdminApp } from '../src/admin/app';
import { openAuditStore } from '../src/audit/store';
import type { AuditStore } from '../src/audit/store';

const TOKEN = 'a-long-random-admin-token';

describe('admin access control', () => {
  let dir: string;
  let store: AuditStore;
  const apps: FastifyInstance[] = [];

  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tollgate-access-'));
    store = openAuditStore(path.join(dir, 'audit.db'));
  });
  afterAll(async () => {
    for (const app of apps) await app.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function build(token: string | null): FastifyInstance {
    const app = buildAdminApp({ store, ready: () => ({ ok: true, detail: {} }), token });
    apps.push(app);
    return app;
  }

  const withToken: Array<[string, Record<string, string>, number]> = [
    ['no credentials', {}, 401],
    ['a wrong token', { authorization: 'Bearer nope' }, 401],
    ['a token of another scheme', { authorization: `Basic ${TOKEN}` }, 401],
    ['the right token', { authorization: `Bearer ${TOKEN}` }, 200],
  ];
  test.each(withToken)('with TOLLGATE_ADMIN_TOKEN set, /api/requests with %s answers %i', async (_name, headers, status) => {
    const res = await build(TOKEN).inject({ method: 'GET', url: '/api/requests', headers });
    expect(res.statusCode).toBe(status);
    if (status === 401) expect(res.headers['www-authenticate']).toBe('Bearer realm="tollgate"');
  });

  test('the UI page needs the token too, the probes do not', async () => {
    const app = build(TOKEN);
    expect((await app.inject({ method: 'GET', url: '/' })).statusCode).toBe(401);
    expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    expect((await app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
  });

  const hosts: Array<[string, number]> = [
    ['127.0.0.1:3129', 200],
    ['localhost:3129', 200],
    ['[::1]:3129', 200],
    ['attacker.example:3129', 403],
    ['127.0.0.1.attacker.example', 403],
  ];
  test.each(hosts)('without a token, Host %s answers %i (DNS rebinding defence)', async (host, status) => {
    const res = await build(null).inject({ method: 'GET', url: '/api/requests', headers: { host } });
    expect(res.statusCode).toBe(status);
  });
});
