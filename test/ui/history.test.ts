import { screenshot, waitUntil } from './ui-harness';
import { UiSuite, WAIT } from './ui-suite';

jest.setTimeout(60_000);

const ui = new UiSuite({}, { timezoneId: 'America/New_York' });

async function waitForSort(column: string, direction: string): Promise<void> {
  const header = ui.page.locator(`th.col-${column}`);
  await waitUntil(async () => (await header.getAttribute('aria-sort')) === direction, `${column} sorted ${direction}`);
}

/** A finished request recorded now, as the proxy would write it. */
function recordNow(host: string, decision: 'allow' | 'deny'): number {
  const now = new Date();
  return ui.admin.store.record({
    startedAt: now, clientIp: '10.0.8.9', clientPort: 50000, clients: [], user: null, kind: 'connect', method: null,
    scheme: null, host, port: 443, path: null, resolvedIp: null, decision, wouldDeny: false,
    rule: decision === 'allow' ? 'github' : '(default)',
    ruleSource: decision === 'allow' ? '20-allow.yaml:7' : '00-settings.yaml:3',
    reason: decision === 'allow' ? 'matched rule "github" (allow)' : 'no rule matched; default deny',
    policyVersion: 'sha256:3f2a9c1e0b7d',
  }, { endedAt: now, status: decision === 'allow' ? 200 : 403, bytesUp: 0, bytesDown: 0, error: null });
}

describe('history', () => {
  it('serves the UI with a strict CSP and lists requests newest first', async () => {
    const response = await ui.page.goto(`${ui.admin.baseUrl}/`, WAIT);
    expect(response?.headers()['content-security-policy']).toMatch(/^default-src 'self'(;|$)/);
    await ui.waitForRowCount(100);
    const expected = (await ui.apiRecords('')).slice(0, 100).map((r) => r.id);
    expect(await ui.rowIds()).toEqual(expected);
    expect(expected[0]).toBe(ui.admin.ids.open);
    expect(await ui.page.locator('#table-summary').textContent()).toContain('newest first');
    await screenshot(ui.page, 'history');
  });

  it('marks would-deny rows and open tunnels with a label, not colour alone', async () => {
    await ui.open('/');
    const { ids } = ui.admin;
    const wouldDeny = ui.page.locator(`tr[data-id="${ids.wouldDeny}"]`);
    await wouldDeny.waitFor(WAIT);
    expect(await wouldDeny.getAttribute('class')).toContain('row-would-deny');
    expect(await wouldDeny.textContent()).toContain('WOULD DENY');
    const tunnel = ui.page.locator(`tr[data-id="${ids.open}"]`);
    expect(await tunnel.getAttribute('class')).toContain('row-open');
    expect(await tunnel.locator('.col-decision').textContent()).toContain('OPEN');
    expect(await tunnel.locator('.col-duration').textContent()).toBe('open');
    const why = ui.page.locator(`tr[data-id="${ids.denied}"] .col-why`);
    expect(await why.locator('.rule').textContent()).toBe('deny-paste-sites');
    expect(await why.locator('.reason').textContent()).toBe('matched rule "deny-paste-sites" (deny)');
  });

  it('shows UTC ISO times with the local time on hover', async () => {
    await ui.open('/');
    const time = ui.page.locator(`tr[data-id="${ui.admin.ids.denied}"] time`);
    await time.waitFor(WAIT);
    expect(await time.getAttribute('datetime')).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    expect(await time.textContent()).toMatch(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}Z$/);
    expect(await time.getAttribute('title')).toMatch(/local \(UTC-0[45]:00\)$/);
  });

  it('loads older pages with the cursor', async () => {
    await ui.open('/');
    await ui.waitForRowCount(100);
    const all = await ui.apiRecords('');
    expect(all.length).toBeGreaterThan(100);
    await ui.page.getByRole('button', { name: 'Load more (older)' }).click();
    await ui.waitForRowCount(all.length);
    expect(await ui.rowIds()).toEqual(all.map((r) => r.id));
    await ui.page.getByText('End of the matching requests.').waitFor(WAIT);
    expect(await ui.page.getByRole('button', { name: 'Load more (older)' }).isHidden()).toBe(true);
  });

  it('sorts the loaded rows by a column, and says it is a client-side sort', async () => {
    await ui.open('/');
    await ui.waitForRowCount(100);
    await ui.page.locator('button[data-sort="status"]').click();
    await waitForSort('status', 'ascending');
    expect(ui.search().get('sort')).toBe('status');
    const statuses = await ui.page.locator('table.requests tbody td.col-status').allTextContents();
    const numeric = statuses.filter((s) => /^\d+$/.test(s)).map(Number);
    expect(numeric.length).toBeGreaterThan(90);
    expect(numeric).toEqual([...numeric].sort((a, b) => a - b));
    expect(await ui.page.locator('#table-summary').textContent()).toContain('sorting reorders only the loaded rows');
    await ui.page.locator('button[data-sort="status"]').click();
    await waitForSort('status', 'descending');
    expect(ui.search().get('sort')).toBe('-status');
    await ui.page.locator('button[data-sort="status"]').click();
    await waitForSort('id', 'descending');
    expect(ui.search().has('sort')).toBe(false);
  });
});

describe('filters', () => {
  it('filters to denied, writes decision=deny into the URL, and back/forward work', async () => {
    await ui.open('/');
    await ui.waitForRowCount(100);
    await ui.page.selectOption('#f-decision', 'deny');
    await ui.page.waitForURL(/[?&]decision=deny(&|$)/, WAIT);
    const denied = await ui.apiRecords('decision=deny');
    expect(denied.length).toBeGreaterThan(3);
    await ui.waitForRowCount(denied.length);
    expect(await ui.rowIds()).toEqual(denied.map((r) => r.id));
    expect(await ui.page.locator('table.requests tbody tr:not(.row-deny)').count()).toBe(0);
    expect(await ui.page.locator('.chips').textContent()).toContain('Decision:');

    await ui.page.goBack(WAIT);
    await ui.page.waitForURL((url) => !url.searchParams.has('decision'), WAIT);
    await ui.waitForRowCount(100);
    expect(await ui.page.inputValue('#f-decision')).toBe('');
    await ui.page.goForward(WAIT);
    await ui.page.waitForURL(/decision=deny/, WAIT);
    await ui.waitForRowCount(denied.length);
    expect(await ui.page.inputValue('#f-decision')).toBe('deny');
  });

  it('applies a host glob and a status class from the form', async () => {
    await ui.open('/');
    await ui.page.fill('#f-host', '**.pastebin.com');
    await ui.page.fill('#f-status', '4xx');
    await ui.page.press('#f-host', 'Enter');
    await ui.page.waitForURL(/host=\*\*\.pastebin\.com/, WAIT);
    expect(ui.search().get('status')).toBe('4xx');
    const expected = await ui.apiRecords('host=**.pastebin.com&status=4xx');
    expect(expected.length).toBeGreaterThan(1);
    await ui.waitForRowCount(expected.length);
    expect(await ui.rowIds()).toEqual(expected.map((r) => r.id));
  });

  it('restores client, free text and would-deny filters from a shared link, and removes one by its chip', async () => {
    await ui.open('/?client=10.0.12.7&q=example.org');
    await ui.waitForRowCount(1);
    expect(await ui.rowIds()).toEqual([ui.admin.ids.defaultDeny]);
    expect(await ui.page.inputValue('#f-client')).toBe('10.0.12.7');
    expect(await ui.page.inputValue('#f-q')).toBe('example.org');
    await ui.page.getByRole('link', { name: 'Remove filter Search' }).click();
    await ui.page.waitForURL((url) => !url.searchParams.has('q') && url.searchParams.get('client') === '10.0.12.7', WAIT);
    await ui.waitForRowCount((await ui.apiRecords('client=10.0.12.7')).length);

    await ui.open('/?would_deny=true');
    await ui.waitForRowCount(1);
    expect(await ui.rowIds()).toEqual([ui.admin.ids.wouldDeny]);
  });

  it('shows the server error for a filter it rejects, as text', async () => {
    await ui.open('/?since=yesterday-ish');
    const alert = ui.page.getByRole('alert');
    await alert.waitFor(WAIT);
    expect(await alert.textContent()).toMatch(/^Could not load requests: since must be/);
  });
});

describe('live', () => {
  it('adds new matching records without a reload', async () => {
    await ui.open('/?decision=deny');
    await ui.waitForRowCount((await ui.apiRecords('decision=deny')).length);
    await ui.page.evaluate('window.marker = 42');
    const allowedId = recordNow('live-allowed.example', 'allow');
    const deniedId = recordNow('live-denied.example', 'deny');
    await ui.page.locator(`tr[data-id="${deniedId}"]`).waitFor(WAIT);
    expect((await ui.rowIds())[0]).toBe(deniedId);
    expect(await ui.page.locator(`tr[data-id="${allowedId}"]`).count()).toBe(0);
    expect(await ui.page.locator(`tr[data-id="${deniedId}"]`).getAttribute('class')).toContain('row-new');
    expect(await ui.page.evaluate('window.marker')).toBe(42);
  });

  it('can be paused and resumed', async () => {
    // The page's timers run on a fake clock: "nothing happens for 10 s" takes no real time.
    await ui.page.clock.install();
    await ui.open('/?host=paused.example');
    await ui.page.getByText('No requests match these filters.').waitFor(WAIT);
    await ui.page.getByRole('button', { name: /Pause live updates/ }).click();
    expect(await ui.page.getByRole('button', { name: /Resume live updates/ }).getAttribute('aria-pressed')).toBe('false');
    let polls = 0;
    ui.page.on('request', (req) => { if (req.url().includes('/api/requests')) polls += 1; });
    const id = recordNow('paused.example', 'deny');
    await ui.page.clock.runFor(10_000);
    expect(polls).toBe(0);
    expect(await ui.page.locator(`tr[data-id="${id}"]`).count()).toBe(0);
    await ui.page.getByRole('button', { name: /Resume live updates/ }).click();
    await ui.page.locator(`tr[data-id="${id}"]`).waitFor(WAIT);
    expect(polls).toBeGreaterThan(0);
  });
});
