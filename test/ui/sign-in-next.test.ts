import { safeNextPath } from '../../src/admin/next-path';
import { UiSuite, WAIT } from './ui-suite';

jest.setTimeout(60_000);

const TOKEN = 'ui-next-test-token-5d1e9a';
const ui = new UiSuite({ token: TOKEN });

async function signIn(): Promise<void> {
  await ui.page.fill('#token', TOKEN);
  await ui.page.click('button[type="submit"]');
}

describe('login returns to the link it came from', () => {
  it('carries a shared link through the login page and lands on it', async () => {
    const { page } = ui;
    const link = '/?host=**.github.com&since=24h';
    await page.goto(`${ui.admin.baseUrl}${link}`, WAIT);
    const login = new URL(page.url());
    expect(login.pathname).toBe('/login.html');
    expect(login.searchParams.get('next')).toBe(link);
    expect(await page.locator('#login-next').textContent()).toBe(`After signing in: ${link}`);
    await signIn();
    await page.waitForURL((url) => url.pathname === '/' && url.searchParams.get('host') === '**.github.com' && url.searchParams.get('since') === '24h', WAIT);
    await page.locator('table.requests tbody tr').first().waitFor(WAIT);
    expect(await page.inputValue('#f-host')).toBe('**.github.com');
  });

  it('keeps next across a wrong token', async () => {
    const { page } = ui;
    await page.goto(`${ui.admin.baseUrl}/?decision=deny`, WAIT);
    await page.fill('#token', 'wrong');
    await page.click('button[type="submit"]');
    await page.waitForURL((url) => url.searchParams.get('error') === 'invalid' && url.searchParams.get('next') === '/?decision=deny', WAIT);
    await signIn();
    await page.waitForURL((url) => url.pathname === '/' && url.searchParams.get('decision') === 'deny', WAIT);
  });

  it.each([
    ['a network-path link', '//evil.example/steal'],
    ['an absolute URL', 'https://evil.example/'],
    ['a backslash path', '/\\evil.example'],
    ['a script URL', 'javascript:alert(1)'],
  ])('refuses %s as next and lands on / instead', async (_name, next) => {
    const { page } = ui;
    const requested: string[] = [];
    page.on('request', (req) => requested.push(new URL(req.url()).host));
    await ui.open(`/login.html?next=${encodeURIComponent(next)}`);
    expect(await page.locator('#login-next').isHidden()).toBe(true);
    expect(await page.inputValue('#next')).toBe('');
    await signIn();
    await page.waitForURL(`${ui.admin.baseUrl}/`, WAIT);
    await page.locator('table.requests tbody tr').first().waitFor(WAIT);
    expect(new Set(requested)).toEqual(new Set([new URL(ui.admin.baseUrl).host]));
  });

  it('accepts exactly the next paths the server accepts', async () => {
    const { page } = ui;
    const values = ['/logout.html', '/logout/x', '/loginx', '/login', '/logout', '/login.css', '/a/../login.html', '/?q=1#h', '/x/./y', '//x', '/\\x'];
    const seen: Array<[string, string]> = [];
    for (const value of values) {
      await ui.open(`/login.html?next=${encodeURIComponent(value)}`);
      seen.push([value, await page.inputValue('#next')]);
    }
    // The page leaves the field empty where the server would answer `/`.
    expect(seen).toEqual(values.map((value) => [value, safeNextPath(value) === '/' ? '' : safeNextPath(value)]));
  });

  it('a next forced into the form by hand is refused by the server too', async () => {
    const { page } = ui;
    await ui.open('/login.html');
    await page.evaluate("document.getElementById('next').value = '//evil.example/'");
    await signIn();
    await page.waitForURL(`${ui.admin.baseUrl}/`, WAIT);
  });
});

describe('sign-out', () => {
  it('ends the session and goes to the login page', async () => {
    const { page } = ui;
    await ui.open('/login.html');
    await signIn();
    await page.waitForURL(`${ui.admin.baseUrl}/`, WAIT);
    await page.locator('table.requests tbody tr').first().waitFor(WAIT);
    const [cookie] = await ui.context.cookies(ui.admin.baseUrl);
    expect(cookie.name).toBe('tollgate_session');

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL((url) => url.pathname === '/login.html', WAIT);
    expect(await ui.context.cookies(ui.admin.baseUrl)).toEqual([]);
    // The old session is revoked on the server, not only forgotten by the browser.
    const api = await fetch(`${ui.admin.baseUrl}/api/requests?limit=1`, { headers: { cookie: `${cookie.name}=${cookie.value}` } });
    expect(api.status).toBe(401);
    await page.goto(`${ui.admin.baseUrl}/`, WAIT);
    expect(new URL(page.url()).pathname).toBe('/login.html');
  });
});
