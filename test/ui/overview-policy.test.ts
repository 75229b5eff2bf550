import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { POLICY_FILES, screenshot } from './ui-harness';
import { UiSuite, WAIT } from './ui-suite';

jest.setTimeout(60_000);

const ui = new UiSuite();

interface Stats {
  total: number;
  allowed: number;
  denied: number;
  would_deny: number;
  top_hosts: Array<{ host: string; count: number }>;
  top_clients: Array<{ client: string; count: number }>;
  series: Array<{ t: string; allowed: number; denied: number; would_deny: number }>;
}

function panel(title: string) {
  return ui.page.locator('section.panel', { has: ui.page.getByRole('heading', { name: title, exact: true }) });
}

describe('overview', () => {
  it('shows totals, the chart, top lists and first-seen destinations for the window', async () => {
    const stats = await ui.api<Stats>('/api/stats?since=24h');
    await ui.open('/?view=overview');
    await ui.page.locator('.cards').waitFor(WAIT);
    const cards = await ui.page.locator('.cards .card').allTextContents();
    expect(cards).toEqual([
      `${stats.total.toLocaleString('en-US')}requests`,
      `${stats.allowed.toLocaleString('en-US')}allowed`,
      `${stats.denied.toLocaleString('en-US')}denied`,
      `${stats.would_deny.toLocaleString('en-US')}would deny`,
    ]);
    expect(stats.total).toBeGreaterThan(100);
    // One SVG group per bucket, drawn with DOM calls; each segment's height follows its count.
    expect(await ui.page.locator('svg.chart g.bucket').count()).toBe(stats.series.length);
    const bars = (kind: string) => ui.page.locator(`svg.chart rect.${kind}`).count();
    expect(await bars('bar-denied')).toBe(stats.series.filter((p) => p.denied > 0).length);
    expect(await bars('bar-would')).toBe(stats.series.filter((p) => p.would_deny > 0).length);
    expect(await bars('bar-allowed')).toBe(stats.series.filter((p) => p.allowed - p.would_deny > 0).length);
    expect(await bars('bar-denied')).toBeGreaterThan(0);
    expect(await panel('Top destinations').locator('tbody tr').first().textContent()).toContain(stats.top_hosts[0].host);
    expect(await panel('Top denied destinations').textContent()).toContain('pastebin.com');
    expect(await panel('Top clients').textContent()).toContain(stats.top_clients[0].client);
    await panel('First seen in this window').locator('table').waitFor(WAIT);
    await screenshot(ui.page, 'overview', { fullPage: true });

    // A top-list entry is a pivot into the history, keeping the window.
    await panel('Top denied destinations').getByRole('link', { name: 'pastebin.com' }).click();
    await ui.page.waitForURL((url) => url.searchParams.get('host') === 'pastebin.com'
      && url.searchParams.get('decision') === 'deny' && url.searchParams.get('since') === '24h', WAIT);
    await ui.page.locator('table.requests tbody tr').first().waitFor(WAIT);
  });

  it('switches first-seen between host and client + host', async () => {
    await ui.open('/?view=overview&since=7d');
    await ui.page.getByRole('link', { name: 'client + host' }).click();
    await ui.page.waitForURL((url) => url.searchParams.get('by') === 'client_host' && url.searchParams.get('since') === '7d', WAIT);
    const { items } = await ui.api<{ items: Array<{ host: string; client_ip: string }> }>('/api/first-seen?since=7d&by=client_host');
    expect(items.length).toBeGreaterThan(0);
    const table = ui.page.locator('table.first-seen');
    await table.waitFor(WAIT);
    expect(await table.locator('thead th').allTextContents()).toContain('client');
    expect(await table.locator('tbody tr').count()).toBe(items.length);
    expect(await table.locator('tbody tr').first().textContent()).toContain(items[0].client_ip);
  });
});

describe('policy', () => {
  it('lists rules in order with FILE:LINE, hits, last hit, and highlights rules never matched', async () => {
    await ui.open('/?view=policy');
    await ui.page.locator('table.rules tbody tr').first().waitFor(WAIT);
    const names = await ui.page.locator('table.rules tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-rule')));
    // The policy's rules in order, then the built-in deciders with their own hit counts.
    expect(names).toEqual(['deny-paste-sites', 'report-file-sharing', 'npm-registry', 'github', 'legacy-mirror', '(default)', '(guard)', '(sni)']);
    const never = ui.page.locator('tr[data-rule="legacy-mirror"]');
    expect(await never.getAttribute('class')).toContain('rule-never');
    expect(await never.textContent()).toContain('NEVER MATCHED');
    expect(await never.locator('.file-line').textContent()).toBe('20-allow.yaml:10');
    const paste = ui.page.locator('tr[data-rule="deny-paste-sites"]');
    expect(await paste.locator('.file-line').textContent()).toBe('10-deny.yaml:3');
    expect(Number((await paste.locator('td.num a').textContent())?.replace(/,/g, ''))).toBeGreaterThan(0);
    expect(await paste.locator('time').count()).toBe(1);
    expect(await ui.page.locator('tr[data-rule="report-file-sharing"]').textContent()).toContain('REPORT MODE');
    expect(await ui.page.locator('.reload-ok').textContent()).toContain('Last reload succeeded');
  });

  it('shows a failed reload prominently with FILE:LINE, and the last good policy still listed', async () => {
    const file = path.join(ui.admin.policiesDir, '20-allow.yaml');
    writeFileSync(file, POLICY_FILES['20-allow.yaml'].replace('    hosts: [mirror.legacy.example]', '    hots: [mirror.legacy.example]'));
    try {
      expect(ui.admin.holder.reload().ok).toBe(false);
      await ui.open('/?view=policy');
      const alert = ui.page.locator('.reload-failed');
      await alert.waitFor(WAIT);
      expect(await alert.getAttribute('role')).toBe('alert');
      expect(await alert.textContent()).toContain('Last reload FAILED');
      expect(await alert.locator('.problems').textContent()).toMatch(/^20-allow\.yaml:12: .*"hots"/);
      expect(await ui.page.locator('table.rules tbody:not(.fallbacks) tr').count()).toBe(5);
      await screenshot(ui.page, 'policy', { fullPage: true });
    } finally {
      writeFileSync(file, POLICY_FILES['20-allow.yaml']);
      expect(ui.admin.holder.reload().ok).toBe(true);
    }
  });

  it('"show in policy" from a record highlights its rule', async () => {
    await ui.open(`/?id=${ui.admin.ids.denied}`);
    await ui.page.getByRole('link', { name: 'show in policy' }).click();
    await ui.page.waitForURL((url) => url.searchParams.get('view') === 'policy' && url.searchParams.get('rule') === 'deny-paste-sites', WAIT);
    await ui.page.locator('tr.rule-highlighted[data-rule="deny-paste-sites"]').waitFor(WAIT);
  });
});
