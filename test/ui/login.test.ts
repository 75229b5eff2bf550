import { waitUntil } from './ui-harness';
import { UiSuite, WAIT } from './ui-suite';

jest.setTimeout(60_000);

const TOKEN = 'ui-test-token-7f3b2c';
const ui = new UiSuite({ token: TOKEN });

describe('token mode', () => {
  it('sends a browser without a session to the login page, which loads under the CSP', async () => {
    const response = await ui.page.goto(`${ui.admin.baseUrl}/?decision=deny`, WAIT);
    expect(new URL(ui.page.url()).pathname).toBe('/login.html');
    expect(response?.status()).toBe(200);
    expect(response?.headers()['content-security-policy']).toMatch(/^default-src 'self'(;|$)/);
    expect(await ui.page.locator('input[name="token"][type="password"]').isVisible()).toBe(true);
    // Its own script ran (it focuses the field) and its own stylesheet applied.
    await waitUntil(async () => (await ui.page.evaluate('document.activeElement && document.activeElement.id')) === 'token', 'focus on the token field');
    expect(await ui.page.evaluate("getComputedStyle(document.querySelector('.login')).backgroundColor")).toBe('rgb(255, 255, 255)');
  });

  it('logs in with the token and shows the history', async () => {
    await ui.open('/');
    await ui.page.fill('#token', TOKEN);
    await Promise.all([ui.page.waitForURL(`${ui.admin.baseUrl}/`, WAIT), ui.page.click('button[type="submit"]')]);
    await ui.page.locator(`tr[data-id="${ui.admin.ids.open}"]`).waitFor(WAIT);
    const [cookie] = await ui.context.cookies(ui.admin.baseUrl);
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
    expect(cookie.value).not.toContain(TOKEN);
    // The session reaches the API from the page; without it the API answers 401.
    expect(await ui.page.evaluate("fetch('/api/requests?limit=1').then((r) => r.status)")).toBe(200);
    expect((await fetch(`${ui.admin.baseUrl}/api/requests?limit=1`)).status).toBe(401);
  });

  it('turns a wrong token away with a message and no session', async () => {
    await ui.open('/login.html');
    await ui.page.fill('#token', 'wrong-token');
    await Promise.all([ui.page.waitForURL(/\/login\.html\?error=/, WAIT), ui.page.click('button[type="submit"]')]);
    expect(await ui.page.locator('#login-error').textContent()).toBe('That token was not accepted. Try again.');
    expect(await ui.context.cookies(ui.admin.baseUrl)).toEqual([]);
    await ui.page.goto(`${ui.admin.baseUrl}/`, WAIT);
    expect(new URL(ui.page.url()).pathname).toBe('/login.html');
  });

  // Last: it leaves this address rate-limited.
  it('says so when this address has failed too often', async () => {
    for (let i = 0; i < 10; i += 1) {
      await fetch(`${ui.admin.baseUrl}/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin: ui.admin.baseUrl },
        body: 'token=guess',
      });
    }
    await ui.open('/login.html');
    await ui.page.fill('#token', TOKEN);
    await Promise.all([ui.page.waitForURL(/\/login\.html\?error=rate_limited$/, WAIT), ui.page.click('button[type="submit"]')]);
    expect(await ui.page.locator('#login-error').textContent()).toMatch(/^Too many failed sign-ins/);
  });
});
