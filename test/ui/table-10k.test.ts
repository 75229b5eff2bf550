import { domRowCount, firstRowHeight, idAtViewTop, loadedCount, scrollTable, waitForLoaded } from './table-helpers';
import { waitUntil } from './ui-harness';
import { UiSuite, WAIT } from './ui-suite';

jest.setTimeout(120_000);

const ui = new UiSuite();
const BULK = 10_000;
/** However many rows are loaded, the page holds about one block of them (virtual-rows.js). */
const MAX_DOM_ROWS = 200;

beforeAll(() => {
  const { store } = ui.admin;
  const start = Date.now() - 20 * 3_600_000;
  for (let i = 0; i < BULK; i += 1) {
    const at = new Date(start + i * 5000);
    store.record({
      startedAt: at, clientIp: `10.1.${(i >> 8) & 255}.${i & 255}`, clientPort: 40000 + (i % 20000), clients: ['bulk'], user: null,
      kind: 'connect', method: null, scheme: null, host: `h${i % 97}.load.example`, port: 443, path: null, resolvedIp: null,
      decision: i % 13 === 0 ? 'deny' : 'allow', wouldDeny: false, rule: i % 13 === 0 ? '(default)' : 'github',
      ruleSource: '20-allow.yaml:7', reason: 'bulk', policyVersion: 'sha256:3f2a9c1e0b7d',
    }, { endedAt: new Date(at.getTime() + (i % 700)), status: i % 13 === 0 ? 403 : [200, 204, 301, 502][i % 4], bytesUp: i, bytesDown: i * 3, error: null });
  }
});

describe('10,000 loaded rows', () => {
  it('stay windowed while loading, scrolling to the middle and the end, and sorting', async () => {
    const { page } = ui;
    const ids = (await ui.apiRecords('host=**.load.example')).map((r) => r.id);
    expect(ids).toHaveLength(BULK);
    await ui.open('/?host=**.load.example');
    await waitForLoaded(page, 100);
    const more = page.getByRole('button', { name: 'Load 1,000 more' });
    for (let clicks = 0; clicks < 20 && (await loadedCount(page)) < BULK; clicks += 1) {
      const before = await loadedCount(page);
      await more.click();
      await waitUntil(async () => (await loadedCount(page)) > before, 'a page of 1,000 more', 20_000);
      expect(await domRowCount(page)).toBeLessThan(MAX_DOM_ROWS);
    }
    await waitForLoaded(page, BULK);
    await page.getByText('End of the matching requests.').waitFor(WAIT);
    expect((await ui.rowIds()).slice(0, 5)).toEqual(ids.slice(0, 5));

    // The middle: the row at the top of the view is the one at that position of the list.
    const rowHeight = await firstRowHeight(page);
    const middle = await scrollTable(page, Math.round((BULK / 2) * rowHeight));
    expect(await domRowCount(page)).toBeLessThan(MAX_DOM_ROWS);
    const index = Math.floor((middle + 8) / rowHeight);
    expect(ids.slice(index - 1, index + 2)).toContain(await idAtViewTop(page));

    // The end: the oldest record is the last row, and the scroll height holds every row.
    await scrollTable(page, 'end');
    expect(await domRowCount(page)).toBeLessThan(MAX_DOM_ROWS);
    expect((await ui.rowIds()).at(-1)).toBe(ids.at(-1));
    const height = await page.evaluate<number>("document.querySelector('.table-wrap').scrollHeight");
    expect(height).toBeGreaterThanOrEqual(BULK * rowHeight);

    // A sort of all 10,000 loaded rows: the page still holds one block, in the new order.
    await scrollTable(page, 0);
    await page.locator('button[data-sort="status"]').click();
    await waitUntil(async () => (await page.locator('th.col-status').getAttribute('aria-sort')) === 'ascending', 'sorted by status');
    expect(await domRowCount(page)).toBeLessThan(MAX_DOM_ROWS);
    const statuses = (await page.locator('table.requests tbody td.col-status').allTextContents()).map(Number);
    expect(statuses.slice(0, 20)).toEqual(Array(20).fill(200));
    await scrollTable(page, 'end');
    const last = (await page.locator('table.requests tbody td.col-status').allTextContents()).map(Number);
    expect(last.at(-1)).toBe(502);
    expect(last).toEqual([...last].sort((a, b) => a - b));
  });
});
