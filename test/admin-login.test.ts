import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { buildAdminApp, SECURITY_HEADERS } from '../src/admin/app';
import { HOUR, NOW, tempStore } from './helpers/admin-fixture';
import type { TempStore } from './helpers/admin-fixture';

const TOKEN = 'a-long-random-admin-token-for-tests';
const HOST = '127.0.0.1:3129';
const ORIGIN = `http://${HOST}`;
/** What a browser sends with a same-origin form post. */
const SAME_ORIGIN = { host: HOST, origin: ORIGIN, 'sec-fetch-site': 'same-origin' };
const FORM = { ...SAME_ORIGIN, 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html,application/xhtml+xml' };

let s: TempStore;
let now: number;
const apps: FastifyInstance[] = [];

beforeAll(() => {
  s = tempStore('tollgate-login-');
  s.write([{ at: NOW.getTime() - HOUR, host: 'github.com' }]);
});
afterAll(async () => {
  for (const app of apps) await app.close();
  s.cleanup();
});
beforeEach(() => { now = NOW.getTime(); });

function build(token: string | null = TOKEN): FastifyInstance {
  const app = buildAdminApp({ store: s.store, ready: () => ({ ok: true, detail: {} }), token, clock: () => new Date(now) });
  apps.push(app);
  return app;
}

function sessionFrom(res: LightMyRequestResponse): string {
  const header = res.headers['set-cookie'];
  const cookie = Array.isArray(header) ? header[0] : header;
  const match = /^tollgate_session=([^;]+);/.exec(cookie ?? '');
  if (match === null) throw new Error(`no session cookie in ${String(cookie)}`);
  return match[1];
}

async function login(app: FastifyInstance, token = TOKEN): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url: '/login', headers: FORM, payload: `token=${encodeURIComponent(token)}` });
}

describe('login with the admin token', () => {
  it('sets an HttpOnly, SameSite=Strict session cookie and sends the browser to /', async () => {
    const res = await login(build());
    expect(res.statusCode).toBe(303);
    expect(res.headers.location).toBe('/');
    const cookie = String(res.headers['set-cookie']);
    expect(cookie).toMatch(/^tollgate_session=[A-Za-z0-9_-]{43}; /);
    expect(cookie).toContain('; HttpOnly');
    expect(cookie).toContain('; SameSite=Strict');
    expect(cookie).toContain('; Path=/');
    expect(cookie).toContain('; Max-Age=43200');
    // Plain HTTP: a Secure cookie would never come back.
    expect(cookie).not.toContain('Secure');
  });

  it('accepts JSON too', async () => {
    const res = await build().inject({ method: 'POST', url: '/login', headers: SAME_ORIGIN, payload: { token: TOKEN } });
    expect(res.statusCode).toBe(303);
    expect(sessionFrom(res)).toHaveLength(43);
  });

  it('the cookie grants the API until logout revokes it', async () => {
    const app = build();
    const session = sessionFrom(await login(app));
    const cookie = { cookie: `other=1; tollgate_session=${session}` };
    expect((await app.inject({ url: '/api/requests', headers: cookie })).statusCode).toBe(200);
    expect((await app.inject({ url: '/api/stats', headers: cookie })).statusCode).toBe(200);
    const out = await app.inject({ method: 'POST', url: '/logout', headers: { ...SAME_ORIGIN, ...cookie } });
    expect(out.statusCode).toBe(303);
    expect(out.headers.location).toBe('/login.html');
    expect(String(out.headers['set-cookie'])).toMatch(/^tollgate_session=; Path=\/; Max-Age=0; HttpOnly; SameSite=Strict$/);
    expect((await app.inject({ url: '/api/requests', headers: cookie })).statusCode).toBe(401);
  });

  it('sessions expire after 12 hours', async () => {
    const app = build();
    const cookie = { cookie: `tollgate_session=${sessionFrom(await login(app))}` };
    now += 12 * HOUR - 1000;
    expect((await app.inject({ url: '/api/requests', headers: cookie })).statusCode).toBe(200);
    now += 2000;
    expect((await app.inject({ url: '/api/requests', headers: cookie })).statusCode).toBe(401);
  });

  it.each([
    ['a forged id', 'A'.repeat(43)],
    ['garbage', 'not a session'],
    ['empty', ''],
  ])('refuses %s as a session', async (_name, value) => {
    const res = await build().inject({ url: '/api/requests', headers: { cookie: `tollgate_session=${value}` } });
    expect(res.statusCode).toBe(401);
  });

  it('refuses a wrong token: 401 for scripts, back to the form for a browser', async () => {
    const app = build();
    const json = await app.inject({ method: 'POST', url: '/login', headers: SAME_ORIGIN, payload: { token: 'wrong' } });
    expect(json.statusCode).toBe(401);
    expect(json.json()).toEqual({ error: 'invalid token' });
    expect(json.headers['set-cookie']).toBeUndefined();
    const form = await login(app, 'wrong');
    expect(form.statusCode).toBe(303);
    expect(form.headers.location).toBe('/login.html?error=invalid');
    expect(form.headers['set-cookie']).toBeUndefined();
    const missing = await app.inject({ method: 'POST', url: '/login', headers: SAME_ORIGIN, payload: {} });
    expect(missing.statusCode).toBe(401);
  });

  it('rate-limits failed logins per source address, even a right token meanwhile', async () => {
    const app = build();
    for (let i = 0; i < 10; i += 1) {
      expect((await app.inject({ method: 'POST', url: '/login', headers: SAME_ORIGIN, payload: { token: `bad${i}` } })).statusCode).toBe(401);
    }
    const limited = await app.inject({ method: 'POST', url: '/login', headers: SAME_ORIGIN, payload: { token: TOKEN } });
    expect(limited.statusCode).toBe(429);
    expect(limited.headers['retry-after']).toBe('60');
    expect(limited.json()).toEqual({ error: expect.stringMatching(/too many failed logins/) });
    expect((await login(app)).headers.location).toBe('/login.html?error=rate_limited');
    const elsewhere = await app.inject({ method: 'POST', url: '/login', headers: SAME_ORIGIN, payload: { token: TOKEN }, remoteAddress: '127.0.0.2' });
    expect(elsewhere.statusCode).toBe(303);
    now += 60_000;
    expect((await login(app)).statusCode).toBe(303);
  });
});

describe('cross-site request guard on POST', () => {
  test.each<[string, Record<string, string>]>([
    ['no Origin and no Sec-Fetch-Site', { host: HOST }],
    ['another origin', { host: HOST, origin: 'http://evil.example' }],
    ['Origin null alone', { host: HOST, origin: 'null' }],
    ['Sec-Fetch-Site same-origin but another Origin', { host: HOST, origin: 'http://evil.example', 'sec-fetch-site': 'same-origin' }],
    ['Sec-Fetch-Site cross-site', { host: HOST, 'sec-fetch-site': 'cross-site' }],
    ['Sec-Fetch-Site same-site', { host: HOST, origin: ORIGIN, 'sec-fetch-site': 'same-site' }],
  ])('refuses a login post with %s', async (_name, headers) => {
    const res = await build().inject({ method: 'POST', url: '/login', headers, payload: { token: TOKEN } });
    expect(res.statusCode).toBe(403);
    expect(res.headers['set-cookie']).toBeUndefined();
    expect(res.json()).toEqual({ error: expect.stringMatching(/cross-site/) });
  });

  it('accepts Origin: null when Sec-Fetch-Site vouches same-origin (a no-referrer page posting)', async () => {
    const res = await build().inject({ method: 'POST', url: '/login', headers: { host: HOST, origin: 'null', 'sec-fetch-site': 'same-origin' }, payload: { token: TOKEN } });
    expect(res.statusCode).toBe(303);
  });

  it('accepts Origin alone or Sec-Fetch-Site alone when same-origin', async () => {
    const app = build();
    expect((await app.inject({ method: 'POST', url: '/login', headers: { host: HOST, origin: ORIGIN }, payload: { token: TOKEN } })).statusCode).toBe(303);
    expect((await app.inject({ method: 'POST', url: '/login', headers: { host: HOST, 'sec-fetch-site': 'same-origin' }, payload: { token: TOKEN } })).statusCode).toBe(303);
  });

  it('does not apply to a request carrying the bearer token, which no other site can send', async () => {
    const res = await build().inject({ method: 'POST', url: '/logout', headers: { host: HOST, authorization: `Bearer ${TOKEN}` } });
    expect(res.statusCode).toBe(303);
  });

  it('applies without a token too', async () => {
    const app = build(null);
    expect((await app.inject({ method: 'POST', url: '/logout', headers: { host: HOST } })).statusCode).toBe(403);
    const ok = await app.inject({ method: 'POST', url: '/login', headers: SAME_ORIGIN, payload: { token: 'x' } });
    expect([ok.statusCode, ok.headers.location]).toEqual([303, '/']);
  });
});

describe('what is reachable without credentials', () => {
  it('sends a browser asking for a page to the login page, and scripts get 401', async () => {
    const app = build();
    const page = await app.inject({ url: '/', headers: { accept: 'text/html' } });
    expect([page.statusCode, page.headers.location]).toEqual([303, '/login.html']);
    const api = await app.inject({ url: '/api/requests', headers: { accept: 'text/html' } });
    expect(api.statusCode).toBe(401);
    expect(api.headers['www-authenticate']).toBe('Bearer realm="tollgate"');
    expect((await app.inject({ url: '/metrics', headers: { accept: 'text/html' } })).statusCode).toBe(401);
    expect((await app.inject({ url: '/' })).statusCode).toBe(401);
  });

  it.each(['/login', '/login.html'])('serves the login page at %s', async (url) => {
    const res = await build().inject({ url });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.body).toMatch(/<form[^>]*action="\/login"|\/login/);
  });

  it.each(['/login.html/../api/requests', '/login/', '/loginx', '/%6cogin.html', '/api/requests?x=/login'])(
    'does not open %s by resemblance',
    async (url) => {
      const res = await build().inject({ url });
      expect([401, 404]).toContain(res.statusCode);
      if (res.statusCode === 404) expect(res.body).not.toContain('"items"');
    },
  );

  it('puts the security headers on redirects and refusals too', async () => {
    const app = build();
    const responses = [
      await app.inject({ url: '/', headers: { accept: 'text/html' } }),
      await app.inject({ url: '/api/requests' }),
      await login(app),
      await app.inject({ method: 'POST', url: '/login', headers: { host: HOST }, payload: {} }),
    ];
    for (const res of responses) {
      for (const [name, value] of Object.entries(SECURITY_HEADERS)) expect(res.headers[name]).toBe(value);
    }
  });
});
