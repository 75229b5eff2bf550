import type { AuditRecordJson } from '../../src/audit/record-types';
import { XSS, screenshot, waitUntil } from './ui-harness';
import { UiSuite, WAIT } from './ui-suite';

jest.setTimeout(60_000);

/**
 * The facets panel beside the history table (issue 19): counts against the seeded records,
 * click-to-filter and exclude round trips through the URL and the table, and saved views.
 */
const ui = new UiSuite();

const PAGE = 100;

function countBy(records: AuditRecordJson[], pick: (r: AuditRecordJson) => string | null): Map<string, number> {
  const counts = new Map<string, number>();
  for (const record of records) {
    const key = pick(record);
    if (key !== null) counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

/** The values and counts a facet shows, in display order. */
async function facetShown(field: string): Promise<Array<[string, number]>> {
  const items = ui.page.locator(`section.facet[data-facet="${field}"] li.facet-value`);
  await items.first().waitFor(WAIT);
  return items.evaluateAll((nodes) => nodes.map((node) => [
    node.querySelector('.facet-name')?.textContent ?? '',
    Number((node.querySelector('.facet-count')?.textContent ?? '').replace(/,/g, '')),
  ] as [string, number]));
}

function totalShown(): Promise<string | null> {
  return ui.page.locator('.facets-total-value').textContent();
}

async function waitForTotal(count: number): Promise<void> {
  await waitUntil(async () => (await ui.page.locator('.facets-total-value').count()) === 1
    && (await totalShown()) === count.toLocaleString('en-US'), `facets total ${count}`);
}

/** The table shows the first page of exactly these records (the API's own answer), in order. */
async function expectTableMatches(query: string): Promise<AuditRecordJson[]> {
  const records = await ui.apiRecords(query);
  const expected = records.slice(0, PAGE).map((r) => r.id);
  await waitUntil(async () => JSON.stringify(await ui.rowIds()) === JSON.stringify(expected), `the rows of ${query}`);
  return records;
}

describe('facets beside the history table', () => {
  it('counts the matching records and the top values of each field', async () => {
    const records = await ui.apiRecords('');
    await ui.open('/');
    await waitForTotal(records.length);
    const hosts = countBy(records, (r) => r.host);
    const shownHosts = await facetShown('host');
    expect(shownHosts.length).toBeGreaterThanOrEqual(5);
    for (const [host, count] of shownHosts) expect([host, count]).toEqual([host, hosts.get(host)]);
    // Top values first: the busiest host leads.
    expect(shownHosts[0][1]).toBe(Math.max(...hosts.values()));
    const decisions = countBy(records, (r) => r.decision);
    expect(new Map(await facetShown('decision'))).toEqual(decisions);
    const clients = countBy(records, (r) => r.client_ip);
    for (const [client, count] of await facetShown('client_ip')) expect(count).toBe(clients.get(client));
    const rules = countBy(records, (r) => r.rule);
    for (const [rule, count] of await facetShown('rule')) expect(count).toBe(rules.get(rule));
    // The hostile host is a facet value like any other: shown as text, never as markup.
    const xss = ui.page.locator('section.facet[data-facet="host"] .facet-name', { hasText: XSS.host });
    expect(await xss.count()).toBe(1);
    expect(await ui.page.locator('img[src="x"]').count()).toBe(0);
    await ui.page.setViewportSize({ width: 1440, height: 1500 });
    await screenshot(ui.page, 'history-facets');
  });

  it('a click on a value keeps only it: URL, chip, table and counts follow; the chip removes it', async () => {
    await ui.open('/?since=7d');
    await ui.page.locator('section.facet[data-facet="host"] a.facet-name[data-facet-value="pastebin.com"]').click();
    await ui.page.waitForURL((url) => url.searchParams.get('host') === 'pastebin.com' && url.searchParams.get('since') === '7d', WAIT);
    const records = await expectTableMatches('host=pastebin.com&since=7d');
    expect(records.length).toBeGreaterThan(5);
    await waitForTotal(records.length);
    expect(await facetShown('host')).toEqual([['pastebin.com', records.length]]);
    const chip = ui.page.locator('.chip-filter[data-filter="host"]');
    expect(await chip.textContent()).toContain('pastebin.com');
    // A second facet narrows further: the decision.
    await ui.page.locator('section.facet[data-facet="client_ip"] a.facet-name[data-facet-value="10.0.9.14"]').click();
    await ui.page.waitForURL((url) => url.searchParams.get('client') === '10.0.9.14' && url.searchParams.get('host') === 'pastebin.com', WAIT);
    await expectTableMatches('host=pastebin.com&client=10.0.9.14&since=7d');
    await chip.getByRole('link', { name: 'Remove filter Host' }).click();
    await ui.page.waitForURL((url) => !url.searchParams.has('host') && url.searchParams.get('client') === '10.0.9.14', WAIT);
    await expectTableMatches('client=10.0.9.14&since=7d');
  });

  it('the exclude action adds not.FIELD=, shown as a NOT chip; host exclusions accumulate', async () => {
    await ui.open('/');
    await ui.page.locator('section.facet[data-facet="host"] a.facet-exclude[data-exclude-value="github.com"]').click();
    await ui.page.waitForURL((url) => url.searchParams.get('not.host') === 'github.com', WAIT);
    const records = await expectTableMatches('not.host=github.com');
    expect(records.some((r) => r.host === 'github.com')).toBe(false);
    await waitForTotal(records.length);
    const names = (await facetShown('host')).map(([host]) => host);
    expect(names).not.toContain('github.com');
    const chip = ui.page.locator('.chip-negated[data-filter="not.host"]');
    expect(await chip.locator('.chip-not').textContent()).toBe('NOT');
    await ui.page.locator('section.facet[data-facet="host"] a.facet-exclude[data-exclude-value="registry.npmjs.org"]').click();
    await ui.page.waitForURL((url) => url.searchParams.get('not.host') === 'github.com,registry.npmjs.org', WAIT);
    await expectTableMatches('not.host=github.com,registry.npmjs.org');
    // Excluding a decision, then removing the exclusion with its chip.
    await ui.page.locator('section.facet[data-facet="decision"] a.facet-exclude[data-exclude-value="allow"]').click();
    await ui.page.waitForURL((url) => url.searchParams.get('not.decision') === 'allow', WAIT);
    const denied = await expectTableMatches('not.host=github.com,registry.npmjs.org&not.decision=allow');
    expect(denied.every((r) => r.decision === 'deny')).toBe(true);
    await ui.page.getByRole('link', { name: 'Remove filter not Host' }).click();
    await ui.page.waitForURL((url) => !url.searchParams.has('not.host') && url.searchParams.get('not.decision') === 'allow', WAIT);
    await expectTableMatches('not.decision=allow');
  });

  it('a registrable domain filters as the glob over it and its subdomains', async () => {
    await ui.open('/');
    const domain = ui.page.locator('section.facet[data-facet="domain"] a.facet-name[data-facet-value="github.com"]');
    const records = await ui.apiRecords('host=**.github.com');
    expect(new Set(records.map((r) => r.host))).toEqual(new Set(['github.com', 'api.github.com', 'codeload.github.com']));
    expect(await domain.locator('xpath=..').locator('.facet-count').textContent()).toBe(String(records.length));
    await domain.click();
    await ui.page.waitForURL((url) => url.searchParams.get('host') === '**.github.com', WAIT);
    await expectTableMatches('host=**.github.com');
    await waitForTotal(records.length);
  });
});

describe('saved views', () => {
  interface Views { items: Array<{ id: number | string; name: string; query: string }> }

  it('saves the current filters under a name, applies and deletes them', async () => {
    const name = 'paste <b>sites</b> "denied"';
    await ui.open('/?decision=deny&host=pastebin.com&not.client=10.0.12.7');
    await ui.page.locator('.saved-views li').first().waitFor(WAIT);
    await ui.page.getByLabel('Name for this view').fill(name);
    await ui.page.getByRole('button', { name: 'Save view' }).click();
    const link = ui.page.locator('.saved-view a.view-apply', { hasText: name });
    await link.waitFor(WAIT);
    expect(await ui.page.locator('.saved-views b').count()).toBe(0);
    const { items } = await ui.api<Views>('/api/views');
    const saved = items.find((v) => v.name === name);
    expect(saved?.query).toBe('decision=deny&host=pastebin.com&not.client=10.0.12.7');

    await ui.open('/?since=1h');
    await ui.page.locator('.saved-view a.view-apply', { hasText: name }).click();
    await ui.page.waitForURL((url) => url.search === '?decision=deny&host=pastebin.com&not.client=10.0.12.7', WAIT);
    await expectTableMatches('decision=deny&host=pastebin.com&not.client=10.0.12.7');

    await ui.page.getByRole('button', { name: `Delete saved view ${name}` }).click();
    await ui.page.locator('.saved-view', { hasText: name }).waitFor({ state: 'detached', ...WAIT });
    expect((await ui.api<Views>('/api/views')).items.some((v) => v.name === name)).toBe(false);
    // Both changes are in the activity list, newest first, the hostile name as text.
    const activity = ui.page.locator('.activity li');
    await waitUntil(async () => (await activity.first().getAttribute('data-action')) === 'view_delete', 'the delete in the activity');
    expect(await activity.nth(0).locator('q').textContent()).toBe(name);
    expect(await activity.nth(1).getAttribute('data-action')).toBe('view_create');
    expect(await activity.nth(1).locator('q').textContent()).toBe(name);
    expect(await ui.page.locator('.activity b').count()).toBe(0);
  });

  it('shows who exported what in the activity list', async () => {
    const res = await fetch(`${ui.admin.baseUrl}/api/requests/export?format=csv&host=pastebin.com&not.decision=allow`);
    expect(res.status).toBe(200);
    await res.text();
    await ui.open('/');
    const first = ui.page.locator('.activity li').first();
    await first.waitFor(WAIT);
    expect(await first.getAttribute('data-action')).toBe('export');
    expect(await first.textContent()).toMatch(/ exported CSV host=pastebin\.com&not\.decision=allow$/);
    expect(await first.locator('time').count()).toBe(1);
  });
});
