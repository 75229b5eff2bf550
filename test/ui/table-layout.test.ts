import { screenshot } from './ui-harness';
import { UiSuite, WAIT } from './ui-suite';

jest.setTimeout(60_000);

/** An 800 px wide window, as on a laptop with a side panel open. */
const ui = new UiSuite({}, { viewport: { width: 800, height: 900 } });

/** Neither the page nor the table's own scroller scrolls sideways. */
async function expectNoSidewaysScroll(): Promise<void> {
  const widths = await ui.page.evaluate<{ page: number; table: number }>(`(() => {
    const root = document.scrollingElement;
    const wrap = document.querySelector('.table-wrap');
    return { page: root.scrollWidth - root.clientWidth, table: wrap.scrollWidth - wrap.clientWidth };
  })()`);
  expect(widths).toEqual({ page: 0, table: 0 });
}

/** Header cells (by column key) that are fully inside the window, and visible. */
function headersInView(): Promise<string[]> {
  return ui.page.locator('table.requests thead th').evaluateAll((cells) => cells
    .filter((cell) => {
      const box = cell.getBoundingClientRect();
      return box.width > 20 && box.left >= 0 && box.right <= (cell.ownerDocument.documentElement?.clientWidth ?? 0);
    })
    .map((cell) => cell.className.replace(/^col-/, '')));
}

function rowHeights(): Promise<number[]> {
  return ui.page.locator('table.requests tbody tr').evaluateAll((rows) => [...new Set(rows.map((r) => Math.round(r.getBoundingClientRect().height * 10) / 10))]);
}

describe('the history table at 800 px', () => {
  it('fits without sideways scrolling and shows Why, Bytes and Duration', async () => {
    await ui.open('/');
    await ui.waitForRowCount(100);
    await expectNoSidewaysScroll();
    // Node starts hidden on a narrow screen; everything else is in view.
    expect(await headersInView()).toEqual(['id', 'time', 'decision', 'client', 'request', 'status', 'why', 'bytes', 'duration']);
    // Every row has the one fixed height the windowed rendering counts on, hostile rows included.
    expect(await rowHeights()).toHaveLength(1);
    await screenshot(ui.page, 'history-800');
  });

  it('has a column chooser kept across reloads, and a compact density', async () => {
    const { page } = ui;
    await ui.open('/');
    await ui.waitForRowCount(100);
    await page.getByText('Columns', { exact: true }).click();
    await page.locator('input[data-column="client"]').uncheck();
    await page.locator('input[data-column="node"]').check();
    await page.keyboard.press('Escape');
    expect(await page.locator('.columns-menu').getAttribute('open')).toBeNull();
    expect(await headersInView()).toEqual(['id', 'time', 'decision', 'node', 'request', 'status', 'why', 'bytes', 'duration']);
    expect(await page.locator('table.requests tbody td.col-client').count()).toBe(0);
    await page.reload(WAIT);
    await ui.waitForRowCount(100);
    expect(await headersInView()).toEqual(['id', 'time', 'decision', 'node', 'request', 'status', 'why', 'bytes', 'duration']);
    await expectNoSidewaysScroll();

    const [comfortable] = await rowHeights();
    await page.getByRole('button', { name: 'Compact rows' }).click();
    expect(await page.getByRole('button', { name: 'Compact rows' }).getAttribute('aria-pressed')).toBe('true');
    const compact = await rowHeights();
    expect(compact).toHaveLength(1);
    expect(compact[0]).toBeLessThan(comfortable * 0.7);
    await page.reload(WAIT);
    await ui.waitForRowCount(100);
    expect(await page.evaluate('document.documentElement.classList.contains("density-compact")')).toBe(true);
    expect(await rowHeights()).toEqual(compact);
    await expectNoSidewaysScroll();
  });
});

describe('dark mode', () => {
  it('follows the system setting', async () => {
    const { page } = ui;
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.setViewportSize({ width: 1440, height: 900 });
    await ui.open('/');
    await ui.waitForRowCount(100);
    const background = (selector: string) => page.evaluate<string>(`getComputedStyle(document.querySelector('${selector}')).backgroundColor`);
    const dark = await background('html');
    const table = await background('.table-wrap');
    expect(dark).toBe('rgb(17, 22, 28)');
    expect(table).toBe('rgb(26, 33, 41)');
    await screenshot(page, 'history-dark');
    await page.emulateMedia({ colorScheme: 'light' });
    expect(await background('html')).toBe('rgb(245, 247, 250)');
  });
});
