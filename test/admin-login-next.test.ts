import type { FastifyInstance } from 'fastify';
import { buildAdminApp } from '../src/admin/app';
import { safeNextPath } from '../src/admin/next-path';
import { HOUR, NOW, tempStore } from './helpers/admin-fixture';
import type { TempStore } from './helpers/admin-fixture';

/** Login returns to the link it came from (`next`), and only ever to a path on this admin. */

const TOKEN = 'a-long-random-admin-token-for-next-tests';
const HOST = '127.0.0.1:3129';
const FORM = {
  host: HOST, origin: `http://${HOST}`, 'sec-fetch-site': 'same-origin',
  'content-type': 'application/x-www-form-urlencoded', accept: 'text/html,application/xhtml+xml',
};

/** Every way we know to say "another site" (or a loop) in a `next`; each must answer `/`. */
const HOSTILE_NEXT = [
  '//evil.example/', '//evil.example', '///evil.example', '/\\evil.example', '\\\\evil.example', 'https://evil.example/',
  'http:evil.example', 'javascript:alert(1)', 'data:text/html,x', 'evil.example', ' /x', '/\t/evil.example',
  '/\r\nLocation: //evil.example', '/login.html', '/login', '/logout', '/login.html?next=/x',
  '', '/' + 'a'.repeat(2048),
];

let s: TempStore;
const apps: FastifyInstance[] = [];

beforeAll(() => {
  s = tempStore('tollgate-login-next-');
  s.write([{ at: NOW.getTime() - HOUR, host: 'github.com' }]);
});
afterAll(async () => {
  for (const app of apps) await app.close();
  s.cleanup();
});

function build(token: string | null = TOKEN): FastifyInstance {
  const app = buildAdminApp({ store: s.store, ready: () => ({ ok: true, detail: {} }), token });
  apps.push(app);
  return app;
}

function loginPost(app: FastifyInstance, token: string, next: string) {
  return app.inject({ method: 'POST', url: '/login', headers: FORM, payload: new URLSearchParams({ token, next }).toString() });
}

describe('safeNextPath', () => {
  it.each([
    ['/', '/'], ['/?host=x', '/?host=x'], ['/?host=**.github.com&since=24h', '/?host=**.github.com&since=24h'],
    ['/?id=42&decision=deny', '/?id=42&decision=deny'], ['/api/requests?limit=1', '/api/requests?limit=1'],
    ['/?q=%2F%2Fevil', '/?q=%2F%2Fevil'], ['/#top', '/#top'],
    // Encoded line breaks stay encoded: a path on this admin, and no header of the redirect.
    ['/%0d%0aSet-Cookie:x=1', '/%0d%0aSet-Cookie:x=1'],
  ])('keeps the same-origin path %s', (value, expected) => {
    expect(safeNextPath(value)).toBe(expected);
  });

  it.each(HOSTILE_NEXT.map((value) => [JSON.stringify(value).slice(0, 60), value]))('refuses %s', (_name, value) => {
    expect(safeNextPath(value)).toBe('/');
  });

  it('refuses what is not a string', () => {
    for (const value of [undefined, null, 42, ['/x'], { next: '/x' }]) expect(safeNextPath(value)).toBe('/');
  });
});

describe('the login redirect carries next', () => {
  it('sends a signed-out page visit to the login page with its path and query', async () => {
    const res = await build().inject({ url: '/?host=x&since=24h', headers: { host: HOST, accept: 'text/html' } });
    expect(res.statusCode).toBe(303);
    expect(res.headers.location).toBe(`/login.html?next=${encodeURIComponent('/?host=x&since=24h')}`);
  });

  it('drops a next that would leave the admin (a request for //evil.example/)', async () => {
    const res = await build().inject({ url: '//evil.example/', headers: { host: HOST, accept: 'text/html' } });
    expect([res.statusCode, res.headers.location]).toEqual([303, '/login.html']);
  });

  it('returns to next after a good token, and keeps it across a wrong one', async () => {
    const app = build();
    const wrong = await loginPost(app, 'wrong', '/?host=x');
    expect(wrong.headers.location).toBe(`/login.html?error=invalid&next=${encodeURIComponent('/?host=x')}`);
    const ok = await loginPost(app, TOKEN, '/?host=x');
    expect([ok.statusCode, ok.headers.location]).toEqual([303, '/?host=x']);
    expect(String(ok.headers['set-cookie'])).toMatch(/^tollgate_session=/);
  });

  it.each(HOSTILE_NEXT.map((value) => [JSON.stringify(value).slice(0, 60), value]))('sends a login with next=%s to /', async (_name, value) => {
    const res = await loginPost(build(), TOKEN, value);
    expect([res.statusCode, res.headers.location]).toEqual([303, '/']);
  });

  it('honours next for JSON logins and without a token (loopback admin) too', async () => {
    const json = await build().inject({
      method: 'POST', url: '/login', headers: { host: HOST, origin: `http://${HOST}` }, payload: { token: TOKEN, next: '/?view=overview' },
    });
    expect(json.headers.location).toBe('/?view=overview');
    const open = await build(null).inject({
      method: 'POST', url: '/login', headers: { host: HOST, origin: `http://${HOST}` }, payload: { next: '//evil.example' },
    });
    expect([open.statusCode, open.headers.location]).toEqual([303, '/']);
  });
});
