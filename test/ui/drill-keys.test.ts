import { waitUntil } from './ui-harness';
import { UiSuite, WAIT } from './ui-suite';

jest.setTimeout(60_000);

const ui = new UiSuite();

/** The rows shown are exactly what the API answers for `query` (its first page), in order. */
async function expectRowsFor(query: string): Promise<void> {
  const expected = (await ui.apiRecords(query)).slice(0, 100).map((r) => r.id);
  expect(expected.length).toBeGreaterThan(0);
  await ui.waitForRowCount(expected.length);
  expect(await ui.rowIds()).toEqual(expected);
}

function current(): Promise<number[]> {
  return ui.page.locator('table.requests tbody tr.row-current').evaluateAll((rows) => rows.map((r) => Number(r.getAttribute('data-id'))));
}

describe('drill-down from the table', () => {
  it('filters by host, parent domain glob, client, status and rule, always keeping the time window', async () => {
    const { page } = ui;
    await ui.open('/?since=24h');
    await ui.waitForRowCount(100);
    const keepsWindow = (url: URL) => url.searchParams.get('since') === '24h';

    // A host cell: exactly that host.
    await page.locator(`tr[data-id="${ui.admin.ids.denied}"] a.host-link`).click();
    await page.waitForURL((url) => url.searchParams.get('host') === 'pastebin.com' && keepsWindow(url), WAIT);
    await expectRowsFor('since=24h&host=pastebin.com');

    // Its parent domain glob (a two-label name offers its own: **.pastebin.com, never **.com).
    expect(await page.locator('a.parent-glob').first().textContent()).toBe('**.pastebin.com');

    // A subdomain offers the glob one level up.
    await ui.open('/?since=24h&q=api.github.com');
    const glob = page.locator('a.parent-glob', { hasText: '**.github.com' }).first();
    await glob.waitFor(WAIT);
    await glob.click();
    await page.waitForURL((url) => url.searchParams.get('host') === '**.github.com' && keepsWindow(url), WAIT);
    const domain = await ui.apiRecords('since=24h&q=api.github.com&host=**.github.com');
    expect(domain.length).toBeGreaterThan(1);
    await expectRowsFor('since=24h&q=api.github.com&host=**.github.com');

    // A client cell, then a status cell, then a rule cell: each narrows the set further.
    await ui.open('/?since=24h');
    await page.locator(`tr[data-id="${ui.admin.ids.defaultDeny}"] .col-client a.drill`).first().click();
    await page.waitForURL((url) => url.searchParams.get('client') === '10.0.12.7' && keepsWindow(url), WAIT);
    await expectRowsFor('since=24h&client=10.0.12.7');
    await page.locator(`tr[data-id="${ui.admin.ids.defaultDeny}"] .col-status a`).click();
    await page.waitForURL((url) => url.searchParams.get('status') === '403' && url.searchParams.get('client') === '10.0.12.7' && keepsWindow(url), WAIT);
    await expectRowsFor('since=24h&client=10.0.12.7&status=403');
    await page.locator(`tr[data-id="${ui.admin.ids.defaultDeny}"] .col-why a`).click();
    await page.waitForURL((url) => (url.searchParams.get('rule') ?? url.searchParams.get('q')) === '(default)' && keepsWindow(url), WAIT);
    const ruleKey = ui.search().has('rule') ? 'rule' : 'q';
    await expectRowsFor(`since=24h&client=10.0.12.7&status=403&${ruleKey}=(default)`);
  });

  it('a client group is a link too, and a record page keeps the window for its back link and pivots', async () => {
    const { page } = ui;
    await ui.open('/?since=24h&decision=allow');
    const group = page.locator(`tr[data-id="${ui.admin.ids.allowed}"] .col-client a.drill`, { hasText: 'ci-runners' });
    await group.click();
    await page.waitForURL((url) => url.searchParams.get('client') === 'ci-runners' && url.searchParams.get('since') === '24h', WAIT);
    await expectRowsFor('since=24h&decision=allow&client=ci-runners');

    await page.locator(`a[aria-label="Open request ${ui.admin.ids.allowed}"]`).click();
    await page.waitForURL((url) => url.searchParams.get('id') === String(ui.admin.ids.allowed) && url.searchParams.get('since') === '24h', WAIT);
    await page.getByRole('link', { name: 'All requests to this domain' }).click();
    await page.waitForURL((url) => url.searchParams.get('host') === '**.github.com' && url.searchParams.get('since') === '24h'
      && !url.searchParams.has('client') && !url.searchParams.has('id'), WAIT);
    await expectRowsFor('since=24h&host=**.github.com');
    await page.goBack(WAIT);
    await page.getByRole('link', { name: '← Back to the list' }).click();
    await page.waitForURL((url) => url.searchParams.get('client') === 'ci-runners' && url.searchParams.get('decision') === 'allow'
      && url.searchParams.get('since') === '24h' && !url.searchParams.has('id'), WAIT);
    await expectRowsFor('since=24h&decision=allow&client=ci-runners');
  });
});

describe('keyboard', () => {
  it('/ focuses the search, Esc leaves it, and keys typed there are not taken', async () => {
    const { page } = ui;
    await ui.open('/');
    await ui.waitForRowCount(100);
    await page.keyboard.press('/');
    expect(await page.evaluate('document.activeElement.id')).toBe('f-q');
    await page.keyboard.type('jk');
    expect(await page.inputValue('#f-q')).toBe('jk');
    expect(await current()).toEqual([]);
    await page.keyboard.press('Escape');
    expect(await page.evaluate('document.activeElement.id')).not.toBe('f-q');
    expect(await page.inputValue('#f-q')).toBe('jk');
  });

  it('j and k move a row highlight, Enter opens the record, Esc returns to the list at that row', async () => {
    const { page } = ui;
    await ui.open('/?since=24h');
    await ui.waitForRowCount(100);
    const ids = await ui.rowIds();
    await page.keyboard.press('j');
    expect(await current()).toEqual([ids[0]]);
    await page.keyboard.press('j');
    await page.keyboard.press('j');
    expect(await current()).toEqual([ids[2]]);
    await page.keyboard.press('k');
    expect(await current()).toEqual([ids[1]]);
    // The highlighted row's link has the focus: screen readers follow it.
    expect(await page.evaluate('document.activeElement.closest("tr").dataset.id')).toBe(String(ids[1]));
    await page.keyboard.press('Enter');
    await page.waitForURL((url) => url.searchParams.get('id') === String(ids[1]) && url.searchParams.get('since') === '24h', WAIT);
    await page.locator('table.fields').waitFor(WAIT);
    await page.keyboard.press('Escape');
    await page.waitForURL((url) => !url.searchParams.has('id') && url.searchParams.get('since') === '24h', WAIT);
    await waitUntil(async () => (await current()).length === 1, 'the row the record was opened from, highlighted');
    expect(await current()).toEqual([ids[1]]);
    // Esc in the list lets the highlight go.
    await page.keyboard.press('Escape');
    expect(await current()).toEqual([]);
  });

  it('j keeps the highlighted row in view far down the list', async () => {
    const { page } = ui;
    await ui.open('/');
    await ui.waitForRowCount(100);
    for (let i = 0; i < 40; i += 1) await page.keyboard.press('j');
    const ids = await ui.rowIds();
    expect(await current()).toEqual([ids[39]]);
    const inView = await page.evaluate<boolean>(`(() => {
      const row = document.querySelector('tr.row-current').getBoundingClientRect();
      const box = document.querySelector('.table-wrap').getBoundingClientRect();
      return row.top >= box.top && row.bottom <= box.bottom;
    })()`);
    expect(inView).toBe(true);
  });
});
