import type { Page } from 'playwright-core';
import { screenshot, waitUntil } from './ui-harness';
import { UiSuite, WAIT } from './ui-suite';

jest.setTimeout(60_000);

/**
 * The time window (issue 19): the histogram above the history table and on Overview, brush and
 * click to zoom, presets including calendar days, typed and picked times, and Overview
 * honouring every history filter.
 */
const ui = new UiSuite();

interface Stats {
  total: number;
  allowed: number;
  denied: number;
  would_deny: number;
}

/** The chart's plot area in page pixels, and its buckets' start times from its data table. */
async function chartGeometry(page: Page): Promise<{ left: number; width: number; y: number; starts: number[]; bucketMs: number }> {
  const chart = page.locator('svg.chart');
  await chart.waitFor(WAIT);
  const box = await chart.boundingBox();
  if (box === null) throw new Error('chart not laid out');
  const scale = box.width / 960;
  const starts = (await page.locator('.series-data tbody tr td:first-child').allTextContents()).map((t) => Date.parse(t));
  return { left: box.x + 60 * scale, width: (960 - 60 - 12) * scale, y: box.y + box.height / 2, starts, bucketMs: starts[1] - starts[0] };
}

function bucketCentre(geometry: { left: number; width: number; starts: number[] }, index: number): number {
  return geometry.left + (index + 0.5) * (geometry.width / geometry.starts.length);
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.000Z$/, 'Z');
}

describe('typed relative times', () => {
  it('read as the server reads them: ms, s, m, h, d and w, with fractions (the page\'s own module)', async () => {
    await ui.open('/');
    const now = Date.parse('2026-03-01T12:00:00Z');
    const read = await ui.page.evaluate(`import('/js/time-window.js').then((m) => ['500ms', '90s', '1.5h', '2w', '7 d', ' 7d', '2y'].map((t) => m.timeValueMs(t, ${now})))`);
    expect(read).toEqual([now - 500, now - 90_000, now - 5_400_000, now - 1_209_600_000, null, null, null]);
  });
});

describe('the histogram', () => {
  it('sits above the history table; dragging across it narrows the window in the URL and the table', async () => {
    await ui.open('/?since=24h');
    const geometry = await chartGeometry(ui.page);
    expect(geometry.starts.length).toBeGreaterThan(20);
    const from = 6;
    const to = 14;
    await ui.page.mouse.move(bucketCentre(geometry, from), geometry.y);
    await ui.page.mouse.down();
    await ui.page.mouse.move(bucketCentre(geometry, 10), geometry.y, { steps: 5 });
    expect(await ui.page.locator('svg.chart rect.brush.brush-active').count()).toBe(1);
    await ui.page.mouse.move(bucketCentre(geometry, to), geometry.y, { steps: 5 });
    await ui.page.mouse.up();
    const since = iso(geometry.starts[from]);
    const until = iso(geometry.starts[to] + geometry.bucketMs);
    await ui.page.waitForURL((url) => url.searchParams.get('since') === since && url.searchParams.get('until') === until, WAIT);
    const expected = (await ui.apiRecords(`since=${since}&until=${until}`)).map((r) => r.id);
    expect(expected.length).toBeGreaterThan(0);
    await waitUntil(async () => JSON.stringify(await ui.rowIds()) === JSON.stringify(expected.slice(0, 100)), 'the zoomed rows');
    // The chart redraws for the narrower window, and zoom out widens it again.
    await ui.page.getByRole('link', { name: 'Zoom out ×2' }).click();
    await ui.page.waitForURL((url) => Date.parse(url.searchParams.get('since') ?? '') < Date.parse(since), WAIT);
  });

  it('clicking a bar narrows the window to its bucket', async () => {
    await ui.open('/?since=24h&decision=deny');
    const geometry = await chartGeometry(ui.page);
    const index = 10;
    await ui.page.mouse.click(bucketCentre(geometry, index), geometry.y);
    const since = iso(geometry.starts[index]);
    const until = iso(geometry.starts[index] + geometry.bucketMs);
    await ui.page.waitForURL((url) => url.searchParams.get('since') === since && url.searchParams.get('until') === until
      && url.searchParams.get('decision') === 'deny', WAIT);
  });

  it('on Overview, honours the history filters, says which apply, and zooms the same way', async () => {
    const query = 'since=24h&host=pastebin.com,example.org&not.client=10.0.12.7';
    const records = await ui.apiRecords(query);
    expect(records.length).toBeGreaterThan(3);
    const stats = await ui.api<Stats>(`/api/stats?${query}`);
    expect(stats.total).toBe(records.length);
    await ui.open(`/?view=overview&${query}`);
    await ui.page.locator('.cards').waitFor(WAIT);
    const cards = await ui.page.locator('.cards .card-value').allTextContents();
    expect(cards.map((c) => Number(c.replace(/,/g, '')))).toEqual([
      records.length,
      records.filter((r) => r.decision === 'allow').length,
      records.filter((r) => r.decision === 'deny').length,
      records.filter((r) => r.would_deny).length,
    ]);
    const applied = ui.page.locator('.applied-filters');
    expect(await applied.locator('[data-filter="host"]').textContent()).toContain('pastebin.com,example.org');
    expect(await applied.locator('.chip-negated[data-filter="not.client"]').textContent()).toContain('10.0.12.7');
    expect(await applied.textContent()).toContain('First seen uses the time window only.');
    await screenshot(ui.page, 'overview-filtered', { fullPage: true });
    // A card is a pivot into the history with every filter kept.
    await ui.page.locator('.card-denied a').click();
    await ui.page.waitForURL((url) => !url.searchParams.has('view') && url.searchParams.get('decision') === 'deny'
      && url.searchParams.get('not.client') === '10.0.12.7' && url.searchParams.get('host') === 'pastebin.com,example.org', WAIT);
    // Back on Overview, the brush keeps the view.
    await ui.open(`/?view=overview&${query}`);
    const geometry = await chartGeometry(ui.page);
    await ui.page.mouse.move(bucketCentre(geometry, 2), geometry.y);
    await ui.page.mouse.down();
    await ui.page.mouse.move(bucketCentre(geometry, 20), geometry.y, { steps: 8 });
    await ui.page.mouse.up();
    await ui.page.waitForURL((url) => url.searchParams.get('view') === 'overview'
      && url.searchParams.get('since') === iso(geometry.starts[2]) && url.searchParams.has('until')
      && url.searchParams.get('not.client') === '10.0.12.7', WAIT);
  });
});

describe('presets and typed times', () => {
  it('"yesterday" and "previous 7 days" are whole UTC days before today, for a fixed clock', async () => {
    await ui.page.clock.setFixedTime(new Date('2025-03-05T10:30:00Z'));
    await ui.open('/?host=github.com');
    await ui.page.locator('a[data-preset="yesterday"]').click();
    await ui.page.waitForURL((url) => url.searchParams.get('since') === '2025-03-04' && url.searchParams.get('until') === '2025-03-05'
      && url.searchParams.get('host') === 'github.com', WAIT);
    expect(await ui.page.locator('a[data-preset="yesterday"]').getAttribute('aria-current')).toBe('true');
    await ui.page.locator('a[data-preset="previous 7 days"]').click();
    await ui.page.waitForURL((url) => url.searchParams.get('since') === '2025-02-26' && url.searchParams.get('until') === '2025-03-05', WAIT);
    await ui.page.locator('a[data-preset="1 h"]').click();
    await ui.page.waitForURL((url) => url.searchParams.get('since') === '1h' && !url.searchParams.has('until'), WAIT);
  });

  it('"yesterday" on the real clock: 24 h apart, at midnight UTC, and the table holds exactly that day', async () => {
    await ui.open('/');
    await ui.page.locator('a[data-preset="yesterday"]').click();
    await ui.page.waitForURL((url) => url.searchParams.has('until'), WAIT);
    const { searchParams } = new URL(ui.page.url());
    const since = Date.parse(`${searchParams.get('since')}T00:00:00Z`);
    const until = Date.parse(`${searchParams.get('until')}T00:00:00Z`);
    expect(until - since).toBe(86_400_000);
    expect(until % 86_400_000).toBe(0);
    expect(Date.now() - until).toBeGreaterThanOrEqual(0);
    expect(Date.now() - until).toBeLessThan(86_400_000);
    const expected = (await ui.apiRecords(`since=${searchParams.get('since')}&until=${searchParams.get('until')}`)).map((r) => r.id);
    await waitUntil(async () => JSON.stringify(await ui.rowIds()) === JSON.stringify(expected.slice(0, 100)), "yesterday's rows");
  });

  it('a time typed without a zone is read as UTC; a picked time fills the field', async () => {
    await ui.open('/');
    await ui.page.locator('#f-since').fill('2025-03-01 12:00');
    await ui.page.locator('#f-until-picker').fill('2025-03-02T08:15');
    expect(await ui.page.locator('#f-until').inputValue()).toBe('2025-03-02T08:15Z');
    await ui.page.getByRole('button', { name: 'Apply' }).click();
    await ui.page.waitForURL((url) => url.searchParams.get('since') === '2025-03-01T12:00Z' && url.searchParams.get('until') === '2025-03-02T08:15Z', WAIT);
    // The pickers show the window back, in UTC.
    expect(await ui.page.locator('#f-since-picker').inputValue()).toBe('2025-03-01T12:00');
    await ui.page.getByText('No requests match these filters.').waitFor(WAIT);
  });
});
