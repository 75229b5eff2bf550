import { readFileSync } from 'node:fs';
import { AUDIT_RECORD_FIELDS } from '../../src/audit/query';
import type { AuditRecordJson } from '../../src/audit/record-types';
import { screenshot, waitUntil, XSS } from './ui-harness';
import { UiSuite, WAIT } from './ui-suite';

jest.setTimeout(60_000);

const ui = new UiSuite({}, { acceptDownloads: true });

function cell(field: string): Promise<string | null> {
  return ui.page.locator(`tr[data-field="${field}"] td`).textContent();
}

async function expectNoPayloadElements(): Promise<void> {
  const { page } = ui;
  expect(await page.$('img')).toBeNull();
  expect(await page.$('iframe')).toBeNull();
  expect(await page.$('svg[onload]')).toBeNull();
  expect(await page.$('[onerror]')).toBeNull();
  expect(await page.locator('script').evaluateAll((scripts) => scripts.map((s) => s.getAttribute('src')))).toEqual(['/js/main.js']);
}

describe('detail', () => {
  it('shows every SPEC §4 field and the rule FILE:LINE', async () => {
    const [record] = (await ui.apiRecords('would_deny=true')).filter((r) => r.id === ui.admin.ids.wouldDeny);
    await ui.open('/?decision=allow');
    await ui.page.locator(`a[aria-label="Open request ${record.id}"]`).click();
    await ui.page.waitForURL(new RegExp(`[?&]id=${record.id}(&|$)`), WAIT);
    await ui.page.locator('table.fields').waitFor(WAIT);
    const fields = await ui.page.locator('table.fields tr[data-field]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-field')));
    expect(fields).toEqual([...AUDIT_RECORD_FIELDS]);
    expect(await cell('host')).toBe('transfer.sh');
    expect(await cell('would_deny')).toBe('true');
    expect(await cell('rule')).toBe('report-file-sharing');
    expect(await cell('rule_source')).toBe('10-deny.yaml:7');
    expect(await cell('started_at')).toBe(record.started_at);
    expect(await cell('resolved_ip')).toBe('144.76.136.153');
    expect(await cell('sni')).toBe('null');
    expect(await cell('bytes_up')).toBe('48,213 bytes (47.1 KiB)');
    expect(await cell('user')).toBe('null');
    expect(await ui.page.locator('.rule-source .file-line').textContent()).toBe('10-deny.yaml:7');
    expect(await ui.page.locator('h1').textContent()).toContain('WOULD DENY');
    await screenshot(ui.page, 'detail', { fullPage: true });
    // Back to the list keeps the filters the detail was opened from.
    await ui.page.getByRole('link', { name: '← Back to the list' }).click();
    await ui.page.waitForURL((url) => url.searchParams.get('decision') === 'allow' && !url.searchParams.has('id'), WAIT);
  });

  it('pivots to all requests to this host and everything from this client', async () => {
    await ui.open(`/?id=${ui.admin.ids.denied}`);
    await ui.page.getByRole('link', { name: 'All requests to this host' }).click();
    await ui.page.waitForURL((url) => url.searchParams.get('host') === 'pastebin.com' && !url.searchParams.has('id'), WAIT);
    const toHost = await ui.apiRecords('host=pastebin.com');
    expect(toHost.length).toBeGreaterThan(1);
    await ui.waitForRowCount(toHost.length);
    expect(await ui.rowIds()).toEqual(toHost.map((r) => r.id));

    await ui.page.goBack(WAIT);
    await ui.page.getByRole('link', { name: 'Everything from this client' }).click();
    await ui.page.waitForURL((url) => url.searchParams.get('client') === '10.0.12.7' && !url.searchParams.has('host'), WAIT);
    const fromClient = await ui.apiRecords('client=10.0.12.7');
    await ui.waitForRowCount(fromClient.length);
    expect(await ui.rowIds()).toEqual(fromClient.map((r) => r.id));
  });

  it('opens from the keyboard', async () => {
    await ui.open('/');
    await ui.page.locator(`a[aria-label="Open request ${ui.admin.ids.allowed}"]`).focus();
    await ui.page.keyboard.press('Enter');
    await ui.page.waitForURL(new RegExp(`[?&]id=${ui.admin.ids.allowed}(&|$)`), WAIT);
    await ui.page.locator('tr[data-field="path"] td').waitFor(WAIT);
    expect(await cell('path')).toBe('/repos/acme/app/tarball');
  });

  it('follows an open tunnel until it ends', async () => {
    const { store } = ui.admin;
    const started = new Date();
    const id = store.open({
      startedAt: started, clientIp: '10.0.8.6', clientPort: 51000, clients: [], user: null, kind: 'connect', method: null,
      scheme: null, host: 'objects.githubusercontent.com', port: 443, path: null, resolvedIp: '185.199.108.133',
      decision: 'allow', wouldDeny: false, rule: 'github', ruleSource: '20-allow.yaml:7', reason: 'matched rule "github" (allow)',
      policyVersion: 'sha256:3f2a9c1e0b7d',
    });
    await ui.open(`/?id=${id}`);
    await ui.page.locator('tr[data-field="ended_at"] .badge-open').waitFor(WAIT);
    store.complete(id, { endedAt: new Date(started.getTime() + 4321), status: 200, bytesUp: 2048, bytesDown: 65536, error: null });
    await ui.page.locator('tr[data-field="ended_at"] time').waitFor(WAIT);
    expect(await cell('duration_ms')).toBe('4,321 (4.3 s)');
    expect(await cell('bytes_down')).toBe('65,536 bytes (64 KiB)');
  });
});

describe('inspected tunnels (kind https, tunnel_id)', () => {
  it('links a request to its tunnel, and an inspected tunnel to the requests inside it; a tunnel without any has no such link', async () => {
    const { store } = ui.admin;
    const { page } = ui;
    const at = new Date(Date.now() - 2 * 60_000);
    const later = (ms: number): Date => new Date(at.getTime() + ms);
    const base = {
      clientIp: '10.0.8.5', clientPort: 41999, clients: ['ci-runners'], user: null, port: 443, resolvedIp: '140.82.112.3',
      decision: 'allow' as const, wouldDeny: false, rule: 'github-org', ruleSource: '20-allow.yaml:7', policyVersion: 'sha256:3f2a9c1e0b7d',
    };
    const tunnel = store.record(
      { ...base, startedAt: at, kind: 'connect', method: 'CONNECT', scheme: null, host: 'github.com', path: null, reason: 'matched rule "github-org" (allow)' },
      { endedAt: later(9000), status: 200, bytesUp: 4096, bytesDown: 90_000, error: null },
    );
    // Requests inside it; one path is a hostile client's, to be shown as text only.
    const inner = [XSS.path, '/our-org/app/pulls'].map((p, i) => store.record(
      { ...base, startedAt: later(100 * (i + 1)), kind: 'https', method: 'GET', scheme: 'https', host: 'github.com', path: p, reason: 'matched rule "github-org" (allow)', tunnelId: tunnel },
      { endedAt: later(100 * (i + 1) + 50), status: 200, bytesUp: 300, bytesDown: 2000, error: null },
    ));

    // A request inside the tunnel names it, as a link, and its field holds the id.
    await ui.open(`/?id=${inner[1]}`);
    await page.locator('tr[data-field="tunnel_id"] td').waitFor(WAIT);
    expect(await cell('kind')).toBe('https');
    expect(await cell('tunnel_id')).toBe(String(tunnel));
    expect(await page.locator('.summary code').textContent()).toBe('GET https://github.com:443/our-org/app/pulls');
    await page.getByRole('link', { name: `inside tunnel #${tunnel}` }).click();
    await page.waitForURL(new RegExp(`[?&]id=${tunnel}(&|$)`), WAIT);
    await page.locator('tr[data-field="tunnel_id"] td').waitFor(WAIT);
    expect(await cell('kind')).toBe('connect');
    expect(await cell('tunnel_id')).toBe('null');

    // The tunnel's page lists what was inspected inside it: History filtered by tunnel_id.
    await page.getByRole('link', { name: 'Requests inside this tunnel' }).click();
    await page.waitForURL((url) => url.searchParams.get('tunnel_id') === String(tunnel) && !url.searchParams.has('id'), WAIT);
    expect(new Set((await ui.apiRecords(`tunnel_id=${tunnel}`)).map((r) => r.id))).toEqual(new Set(inner));
    await ui.waitForRowCount(inner.length);
    expect(await ui.rowIds()).toEqual([...inner].reverse());
    expect(await page.locator('.chips .chip-filter').textContent()).toContain(`Inside tunnel: ${tunnel}`);
    expect(await page.getByText(XSS.path).first().isVisible()).toBe(true);
    await expectNoPayloadElements();
    // The form keeps the tunnel when another filter is applied; its chip removes it.
    await page.selectOption('#f-decision', 'allow');
    await page.waitForURL((url) => url.searchParams.get('decision') === 'allow' && url.searchParams.get('tunnel_id') === String(tunnel), WAIT);
    await ui.waitForRowCount(inner.length);
    await page.getByRole('link', { name: 'Remove filter Inside tunnel' }).click();
    await page.waitForURL((url) => !url.searchParams.has('tunnel_id'), WAIT);

    // A tunnel nothing was inspected in (the seeded ones) offers no such link.
    await ui.open(`/?id=${ui.admin.ids.open}`);
    await page.locator('tr[data-field="tunnel_id"] td').waitFor(WAIT);
    await page.getByRole('link', { name: 'All requests to this host' }).waitFor(WAIT);
    expect(await page.getByRole('link', { name: 'Requests inside this tunnel' }).count()).toBe(0);
    expect(await page.getByRole('link', { name: /inside tunnel #/ }).count()).toBe(0);
  });
});

describe('export', () => {
  it.each([['csv'], ['ndjson']])('downloads exactly the filtered set as %s', async (format) => {
    await ui.open('/?decision=deny&since=24h');
    const expected = await ui.apiRecords('decision=deny&since=24h');
    await ui.waitForRowCount(expected.length);
    const link = ui.page.locator(`a[data-export="${format}"]`);
    const href = new URL((await link.getAttribute('href')) ?? '', ui.admin.baseUrl);
    expect(href.pathname).toBe('/api/requests/export');
    expect(Object.fromEntries(href.searchParams)).toEqual({ decision: 'deny', since: '24h', format });
    const [download] = await Promise.all([ui.page.waitForEvent('download', WAIT), link.click()]);
    expect(download.suggestedFilename()).toMatch(new RegExp(`^tollgate-requests-.*\\.${format}$`));
    const lines = readFileSync(await download.path(), 'utf8').split(/\r?\n/).filter((line) => line !== '');
    if (format === 'ndjson') {
      const records = lines.map((line) => JSON.parse(line) as AuditRecordJson);
      expect(records.map((r) => r.id)).toEqual(await ui.rowIds());
      expect(records.every((r) => r.decision === 'deny')).toBe(true);
    } else {
      // A header row, then one row per record (no value in these records holds a line break).
      expect(lines[0].split(',')).toEqual([...AUDIT_RECORD_FIELDS]);
      expect(lines.length - 1).toBe(expected.length);
      expect(lines.slice(1).map((line) => Number(line.split(',')[0]))).toEqual(await ui.rowIds());
    }
  });
});

describe('hostile records', () => {
  it('renders XSS payloads as inert text in the list, the detail, the filters and the overview', async () => {
    const { page } = ui;
    await ui.open('/');
    await page.locator(`tr[data-id="${ui.admin.ids.xss}"]`).waitFor(WAIT);
    expect(await page.getByText(XSS.host).first().isVisible()).toBe(true);
    expect(await page.getByText(XSS.path).first().isVisible()).toBe(true);
    expect(await page.getByText(XSS.reason).first().isVisible()).toBe(true);
    await expectNoPayloadElements();

    await page.locator(`a[aria-label="Open request ${ui.admin.ids.xss}"]`).click();
    await page.locator('tr[data-field="user"] td').waitFor(WAIT);
    expect(await cell('host')).toBe(XSS.host);
    expect(await cell('path')).toBe(XSS.path);
    expect(await cell('reason')).toBe(XSS.reason);
    expect(await cell('user')).toBe(XSS.user);
    await expectNoPayloadElements();

    // The ClientHello's server name (sni) is shown where the other fields are, as text.
    await ui.open(`/?id=${ui.admin.ids.denied}`);
    await page.locator('tr[data-field="sni"] td').waitFor(WAIT);
    expect(await cell('sni')).toBe(XSS.sni);
    await expectNoPayloadElements();
    await ui.open(`/?id=${ui.admin.ids.xss}`);
    await page.locator('tr[data-field="user"] td').waitFor(WAIT);

    // Through the pivot the payload travels into the URL, the form and the filter chips.
    await page.getByRole('link', { name: 'All requests to this host' }).click();
    await page.waitForURL((url) => url.searchParams.get('host') === XSS.host, WAIT);
    await page.locator('.chips code').first().waitFor(WAIT);
    expect(await page.locator('.chips code').first().textContent()).toBe(XSS.host);
    expect(await page.inputValue('#f-host')).toBe(XSS.host);
    await expectNoPayloadElements();

    await ui.open('/?view=overview');
    await page.locator('.cards').waitFor(WAIT);
    expect(await page.getByText(XSS.host).first().isVisible()).toBe(true);
    await expectNoPayloadElements();
  });

  it('runs under a CSP that refuses inline script, and the console watch sees a refusal', async () => {
    await ui.open('/');
    await ui.page.locator('table.requests tbody tr').first().waitFor(WAIT);
    // What a payload would need if it ever reached the DOM as markup: an inline script.
    await ui.page.evaluate("const s = document.createElement('script'); s.textContent = 'window.injected = 1'; document.body.appendChild(s)");
    await waitUntil(async () => ui.watch.cspViolations.length > 0, 'a CSP violation report');
    expect(await ui.page.evaluate('window.injected')).toBeUndefined();
    expect(ui.watch.cspViolations[0]).toMatch(/script-src|default-src/);
    ui.watch.cspViolations.length = 0;
  });
});
