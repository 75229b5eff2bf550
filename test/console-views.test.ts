import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Pool } from 'pg';
import pino from 'pino';
import { buildAdminApp } from '../src/admin/app';
import { consoleFileFor, SqliteConsoleStore } from '../src/admin/console-sqlite';
import type { ConsoleEvent, ConsoleStore, SavedView } from '../src/admin/console-store';
import { parseRange } from '../src/policy/ip-range';
import type { IpRange } from '../src/policy/ip-range';
import { applyPgMigrations } from '../src/fleet/pg-migrate';
import { PgConsoleStore } from '../src/fleet/pg-console';
import { startServing } from '../src/serve';
import { NOW, tempStore } from './helpers/admin-fixture';
import type { TempStore } from './helpers/admin-fixture';
import { describePg, freshDatabase, postgresTestsOff } from './helpers/postgres';
import { startServed } from './helpers/served-proxy';
import { testServeConfig } from './helpers/serve-config';

/**
 * Issue 19, the console's own state and its accountability: saved views (CRUD, validation,
 * persistence, kept out of the rebuildable index), the record of who looked with each identity
 * source, sign-out, login's `next=`, and /readyz's detail behind the token.
 */

const TOKEN = 'console-test-token-0123456789';
const ORIGIN = { host: 'admin.test:3129', origin: 'http://admin.test:3129' };
const AUTH = { authorization: `Bearer ${TOKEN}` };

function range(text: string): IpRange {
  const parsed = parseRange(text);
  if (!parsed.ok) throw new Error(parsed.message);
  return parsed.range;
}

interface Built {
  app: FastifyInstance;
  store: TempStore;
}

function build(consoleStore: ConsoleStore, token: string | null = TOKEN, authProxy: IpRange[] = []): Built {
  const store = tempStore('tollgate-console-');
  store.write([{ at: NOW.getTime() - 1000, host: 'github.com' }]);
  const app = buildAdminApp({
    store: store.store,
    token,
    authProxy,
    console: consoleStore,
    clock: () => NOW,
    ready: (view) => ({ ok: true, detail: { policy: { files: ['10-secret-rules.yaml'], rules: ['deny-paste'] }, seen_by: view.authenticated } }),
  });
  return { app, store };
}

const pgOff = postgresTestsOff();

/** The two console stores, each as a fresh one. */
const STORES: Array<[string, () => Promise<{ console: ConsoleStore; cleanup: () => Promise<void> }>]> = [
  ['sqlite', async () => ({ console: new SqliteConsoleStore(':memory:'), cleanup: async () => undefined })],
  ...(pgOff ? [] : [['postgres', async () => {
    const pool = new Pool({ connectionString: freshDatabase('console'), max: 3 });
    await applyPgMigrations(pool);
    return { console: new PgConsoleStore(pool), cleanup: () => pool.end() };
  }] as [string, () => Promise<{ console: ConsoleStore; cleanup: () => Promise<void> }>]]),
];

describe.each(STORES)('saved views and who looked, %s console store', (_name, open) => {
  let built: Built;
  let cleanup: () => Promise<void>;

  beforeEach(async () => {
    const opened = await open();
    cleanup = opened.cleanup;
    built = build(opened.console, TOKEN, [range('10.9.9.0/24')]);
  });
  afterEach(async () => {
    await built.app.close();
    built.store.cleanup();
    await cleanup();
  });

  async function post(body: unknown, headers: Record<string, string> = AUTH) {
    return built.app.inject({ method: 'POST', url: '/api/views', headers: { ...ORIGIN, ...headers }, payload: body as Record<string, unknown> });
  }

  async function events(query = ''): Promise<{ items: ConsoleEvent[]; next_before: number | null }> {
    return (await built.app.inject({ url: `/api/console/events${query}`, headers: AUTH })).json();
  }

  test('create, list and delete views; each change is an event with its actor', async () => {
    const created = await post({ name: '  Pastebin yesterday ', query: '?host=**.pastebin.com&since=2025-02-28&until=2025-03-01&not.client=ci' });
    expect(created.statusCode).toBe(201);
    const view = created.json() as SavedView;
    expect(view).toEqual({ id: expect.any(Number), name: 'Pastebin yesterday', query: 'host=**.pastebin.com&since=2025-02-28&until=2025-03-01&not.client=ci', created_by: 'token', created_at: NOW.toISOString() });
    const second = (await post({ name: 'Denied', query: 'decision=deny' })).json() as SavedView;
    const listed = (await built.app.inject({ url: '/api/views', headers: AUTH })).json() as { items: SavedView[] };
    expect(listed.items.map((v) => v.name)).toEqual(['Denied', 'Pastebin yesterday']);
    // The saved query opens on /api/requests as it is.
    expect((await built.app.inject({ url: `/api/requests?${view.query}`, headers: AUTH })).statusCode).toBe(200);
    expect((await post({ name: 'Denied', query: 'decision=allow' })).statusCode).toBe(409);
    const deleted = await built.app.inject({ method: 'DELETE', url: `/api/views/${second.id}`, headers: { ...ORIGIN, ...AUTH } });
    expect(deleted.statusCode).toBe(204);
    expect((await built.app.inject({ method: 'DELETE', url: `/api/views/${second.id}`, headers: { ...ORIGIN, ...AUTH } })).statusCode).toBe(404);
    expect((await built.app.inject({ method: 'DELETE', url: '/api/views/abc', headers: { ...ORIGIN, ...AUTH } })).statusCode).toBe(400);
    const log = await events();
    expect(log.items.map((e) => [e.action, e.actor, e.actor_source, e.detail.name])).toEqual([
      ['view_delete', 'token', 'token', 'Denied'],
      ['view_create', 'token', 'token', 'Denied'],
      ['view_create', 'token', 'token', 'Pastebin yesterday'],
    ]);
    expect(log.items[0].at).toBe(NOW.toISOString());
    const page = await events('?limit=2');
    expect(page.items).toHaveLength(2);
    expect((await events(`?limit=2&before=${page.next_before}`)).items.map((e) => e.detail.name)).toEqual(['Pastebin yesterday']);
    expect((await events('?action=view_delete')).items).toHaveLength(1);
  });

  test('a view must be filters that parse, within bounds', async () => {
    const bad: Array<[unknown, RegExp]> = [
      [{ name: 'x', query: 'hots=github.com' }, /"hots" is not a filter/],
      [{ name: 'x', query: 'host=a&host=b' }, /given twice/],
      [{ name: 'x', query: 'status=7xx' }, /query: status/],
      [{ name: 'x', query: 'not.decision=maybe' }, /not\.decision/],
      [{ name: 'x', query: 'since=yesterday-ish' }, /since/],
      [{ name: 'x', query: 'fields=host' }, /"fields" is not a filter/],
      [{ name: 'x', query: '__proto__=a' }, /"__proto__" is not a filter/],
      [{ name: 'x', query: 'decision=maybe&decision=allow' }, /query: decision is not a valid value/],
      [{ name: '', query: 'host=a' }, /name/],
      [{ name: '   ', query: 'host=a' }, /name/],
      [{ name: 'tab\there', query: 'host=a' }, /name/],
      [{ name: 'x'.repeat(101), query: 'host=a' }, /name/],
      [{ name: 'x', query: `q=${'a'.repeat(2001)}` }, /query/],
      [{ name: 'x' }, /query/],
      [{ name: 'x', query: 'host=a', extra: 1 }, /extra/],
    ];
    for (const [body, message] of bad) {
      const res = await post(body);
      expect([JSON.stringify(body).slice(0, 60), res.statusCode]).toEqual([JSON.stringify(body).slice(0, 60), 400]);
      expect(res.json().error).toMatch(message);
    }
    expect((await built.app.inject({ url: '/api/views', headers: AUTH })).json().items).toEqual([]);
    expect((await events()).items).toEqual([]);
  });

  test('views need the token or a session, and a same-origin POST', async () => {
    expect((await built.app.inject({ url: '/api/views' })).statusCode).toBe(401);
    expect((await built.app.inject({ method: 'POST', url: '/api/views', headers: ORIGIN, payload: { name: 'x', query: '' } })).statusCode).toBe(401);
    const cross = await built.app.inject({ method: 'POST', url: '/api/views', headers: { origin: 'https://evil.example', cookie: 'tollgate_session=x' }, payload: { name: 'x', query: '' } });
    expect(cross.statusCode).toBe(403);
  });

  test('exports are recorded with who asked: token, session, trusted header, header from elsewhere', async () => {
    const exportAs = async (headers: Record<string, string>, remoteAddress = '127.0.0.1') => {
      const res = await built.app.inject({ url: '/api/requests/export?format=ndjson&host=github.com&not.decision=deny', headers, remoteAddress });
      expect(res.statusCode).toBe(200);
      expect(res.body).toContain('github.com');
    };
    await exportAs(AUTH);
    const login = await built.app.inject({ method: 'POST', url: '/login', headers: ORIGIN, payload: { token: TOKEN } });
    const cookie = String(login.headers['set-cookie']).split(';')[0];
    await exportAs({ cookie });
    // From an --admin-auth-proxy peer, the header names the admin (access still needs the token).
    await exportAs({ ...AUTH, 'x-forwarded-user': 'alice@example.com' }, '10.9.9.4');
    // From any other peer it is ignored: the token names the request.
    await exportAs({ ...AUTH, 'x-forwarded-user': 'mallory' }, '10.9.8.4');
    await exportAs({ ...AUTH, 'x-forwarded-user': 'mallory' }, '127.0.0.1');
    // The header alone grants nothing, even from the proxy.
    const bare = await built.app.inject({ url: '/api/requests/export', headers: { 'x-forwarded-user': 'alice@example.com' }, remoteAddress: '10.9.9.4' });
    expect(bare.statusCode).toBe(401);
    const log = (await events('?action=export')).items.reverse();
    expect(log.map((e) => [e.actor_source, e.actor])).toEqual([
      ['token', 'token'],
      ['session', expect.stringMatching(/^session [A-Za-z0-9_-]{8}$/)],
      ['proxy_header', 'alice@example.com'],
      ['token', 'token'],
      ['token', 'token'],
    ]);
    expect(log[0].detail).toEqual({ format: 'ndjson', query: 'host=github.com&not.decision=deny' });
    // A login through the auth proxy names its session after the proxy's user.
    const proxied = await built.app.inject({ method: 'POST', url: '/login', headers: { ...ORIGIN, 'x-forwarded-user': 'bob' }, remoteAddress: '10.9.9.5', payload: { token: TOKEN } });
    const bobCookie = String(proxied.headers['set-cookie']).split(';')[0];
    const me = (await built.app.inject({ url: '/api/console/me', headers: { cookie: bobCookie } })).json();
    expect(me).toEqual({ name: 'bob', source: 'session', can_sign_out: true });
    expect((await built.app.inject({ url: '/api/console/me', headers: AUTH })).json()).toEqual({ name: 'token', source: 'token', can_sign_out: false });
  });
});

describe('sign-out, login next= and /readyz', () => {
  let built: Built;
  beforeEach(() => {
    built = build(new SqliteConsoleStore(':memory:'));
  });
  afterEach(async () => {
    await built.app.close();
    built.store.cleanup();
  });

  test('POST /api/logout ends the session and clears the cookie', async () => {
    const login = await built.app.inject({ method: 'POST', url: '/login', headers: ORIGIN, payload: { token: TOKEN } });
    const cookie = String(login.headers['set-cookie']).split(';')[0];
    expect((await built.app.inject({ url: '/api/views', headers: { cookie } })).statusCode).toBe(200);
    const out = await built.app.inject({ method: 'POST', url: '/api/logout', headers: { ...ORIGIN, cookie } });
    expect(out.statusCode).toBe(200);
    expect(out.json()).toEqual({ signed_out: true, location: '/login.html' });
    expect(String(out.headers['set-cookie'])).toMatch(/^tollgate_session=; Path=\/; Max-Age=0; HttpOnly; SameSite=Strict/);
    expect((await built.app.inject({ url: '/api/views', headers: { cookie } })).statusCode).toBe(401);
    // Cross-site sign-out is refused like any other state change.
    expect((await built.app.inject({ method: 'POST', url: '/api/logout', headers: { origin: 'https://evil.example' } })).statusCode).toBe(403);
    expect((await built.app.inject({ method: 'POST', url: '/api/logout', headers: ORIGIN })).json()).toEqual({ signed_out: false, location: '/login.html' });
  });

  test('a page asked for while signed out sends to login with next=, and login returns there', async () => {
    const page = await built.app.inject({ url: '/history?host=github.com&since=24h', headers: { accept: 'text/html' } });
    expect(page.statusCode).toBe(303);
    expect(page.headers.location).toBe(`/login.html?next=${encodeURIComponent('/history?host=github.com&since=24h')}`);
    const form = await built.app.inject({
      method: 'POST', url: '/login', headers: { ...ORIGIN, accept: 'text/html', 'content-type': 'application/x-www-form-urlencoded' },
      payload: `token=${TOKEN}&next=${encodeURIComponent('/history?host=github.com&since=24h')}`,
    });
    expect(form.statusCode).toBe(303);
    expect(form.headers.location).toBe('/history?host=github.com&since=24h');
    const json = await built.app.inject({ method: 'POST', url: '/login?next=%2Frecord%2F42', headers: ORIGIN, payload: { token: TOKEN } });
    expect(json.headers.location).toBe('/record/42');
    // A failed form login keeps next for the next try.
    const failed = await built.app.inject({
      method: 'POST', url: '/login', headers: { ...ORIGIN, accept: 'text/html', 'content-type': 'application/x-www-form-urlencoded' },
      payload: `token=wrong&next=${encodeURIComponent('/history')}`,
    });
    expect(failed.headers.location).toBe('/login.html?error=invalid&next=%2Fhistory');
  });

  test.each([
    'https://evil.example/', '//evil.example/x', '/\\evil.example', '\\\\evil.example', 'http:/evil.example', 'javascript:alert(1)',
    '/%2F/evil.example', ' /x', '/x\r\nLocation: https://evil.example', 'evil.example', '/login.html?next=/x', '',
  ])('login never redirects off the admin: next=%j', async (next) => {
    const res = await built.app.inject({ method: 'POST', url: '/login', headers: ORIGIN, payload: { token: TOKEN, next } });
    expect(res.statusCode).toBe(303);
    const location = String(res.headers.location);
    expect(location.startsWith('/')).toBe(true);
    expect(location.startsWith('//')).toBe(false);
    expect(location).not.toMatch(/\\/);
    // Whatever was asked, the browser stays on the admin (a %2F in a path is not a slash).
    expect(new URL(location, 'http://admin.test').origin).toBe('http://admin.test');
  });

  test('/readyz without the token says only ready or not; with it, the detail', async () => {
    const open = await built.app.inject({ url: '/readyz' });
    expect(open.statusCode).toBe(200);
    expect(open.json()).toEqual({ ready: true });
    expect(open.body).not.toContain('secret-rules');
    const detailed = await built.app.inject({ url: '/readyz', headers: AUTH });
    expect(detailed.json()).toMatchObject({ ready: true, policy: { files: ['10-secret-rules.yaml'] }, seen_by: true });
    const wrong = await built.app.inject({ url: '/readyz', headers: { authorization: 'Bearer nope' } });
    expect(wrong.json()).toEqual({ ready: true });
  });
});

describe('views are kept apart from the rebuildable audit index', () => {
  test('a view saved through serve survives a restart that rebuilds the index from the log', async () => {
    const served = await startServed();
    const { dir, dbFile } = served;
    try {
      expect((await served.get('/before-restart')).status).toBe(200);
      const base = `http://127.0.0.1:${served.running.adminAddress.port}`;
      const saved = await fetch(`${base}/api/views`, {
        method: 'POST', headers: { 'content-type': 'application/json', origin: base }, body: JSON.stringify({ name: 'restart', query: 'q=before-restart' }),
      });
      expect(saved.status).toBe(201);
      await served.running.shutdown();
      expect(consoleFileFor(dbFile)).toBe(path.join(path.dirname(dbFile), 'audit.console.db'));
      expect(fs.existsSync(consoleFileFor(dbFile))).toBe(true);
      // Lose the index: serve rebuilds it from the audit log at the next start.
      for (const suffix of ['', '-wal', '-shm']) fs.rmSync(`${dbFile}${suffix}`, { force: true });
      const again = await startServing(testServeConfig({ policiesDir: path.join(dir, 'policies'), dbFile }), pino({ level: 'silent' }));
      try {
        const base2 = `http://127.0.0.1:${again.adminAddress.port}`;
        const views = (await (await fetch(`${base2}/api/views`)).json()) as { items: SavedView[] };
        expect(views.items.map((v) => [v.name, v.query, v.created_by])).toEqual([['restart', 'q=before-restart', 'loopback']]);
        const records = (await (await fetch(`${base2}/api/requests?${views.items[0].query}`)).json()) as { items: Array<{ path: string }> };
        expect(records.items.map((r) => r.path)).toEqual(['/before-restart']);
        const log = (await (await fetch(`${base2}/api/console/events`)).json()) as { items: ConsoleEvent[] };
        expect(log.items.map((e) => [e.action, e.actor_source])).toEqual([['view_create', 'loopback']]);
      } finally {
        await again.shutdown();
      }
    } finally {
      await served.origin.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

/**
 * The role SQL of docs/operations.md, as written there: the console role may keep views. Its roles
 * are renamed ROLE_views: roles belong to the whole server the test files share, and
 * test/fleet-ship-units.test.ts creates the same ones.
 */
function roleSql(): string {
  const sqlBlock = (file: string, marker: string): string => {
    const text = fs.readFileSync(path.join(__dirname, '..', file), 'utf8');
    const at = text.indexOf(marker);
    if (at < 0) throw new Error(`${file} has no "${marker}" section`);
    const section = text.slice(at);
    const start = section.indexOf('```sql') + 6;
    return section.slice(start, section.indexOf('```', start));
  };
  return sqlBlock(path.join('docs', 'operations.md'), '**Least-privilege roles.**')
    .split('\n')
    .filter((line) => !/tollgate_owner|^--/.test(line.trim()))
    .join('\n')
    .replace(/'…'/g, "'x'")
    .replace(/\btollgate_(shipper|console)\b/g, '$&_views');
}

describePg('the console role of docs/operations.md keeps views and events', () => {
  test('with the added grants it saves, lists and deletes views and records events, and may not touch records', async () => {
    const url = freshDatabase('consolerole');
    const owner = new Pool({ connectionString: url });
    const u = new URL(url);
    u.username = 'tollgate_console_views';
    const consolePool = new Pool({ connectionString: u.toString() });
    try {
      await applyPgMigrations(owner);
      await owner.query(roleSql());
      const store = new PgConsoleStore(consolePool);
      const actor = { name: 'alice', source: 'proxy_header' as const };
      const view = await store.createView({ name: 'v', query: 'decision=deny' }, actor, NOW);
      await store.recordEvent('export', { format: 'csv', query: 'q=\u0000x' }, actor, NOW);
      expect((await store.listViews()).map((v) => v.name)).toEqual(['v']);
      expect(await store.deleteView(view.id, actor, NOW)).toMatchObject({ name: 'v' });
      expect((await store.listEvents(10, null, null)).map((e) => e.action)).toEqual(['view_delete', 'export', 'view_create']);
      await expect(consolePool.query('DELETE FROM console_events')).rejects.toThrow(/permission denied/);
      await expect(consolePool.query("UPDATE console_events SET actor = 'x'")).rejects.toThrow(/permission denied/);
      await expect(consolePool.query('DELETE FROM requests')).rejects.toThrow(/permission denied/);
    } finally {
      await Promise.all([owner.end(), consolePool.end()]);
    }
  });
});
