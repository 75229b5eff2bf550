import { recordAt, scrollTable } from './table-helpers';
import { UiSuite, WAIT } from './ui-suite';

jest.setTimeout(60_000);

const ui = new UiSuite();

/** Tags every row node now in the page, so a later check can tell kept nodes from new ones. */
async function tagRows(): Promise<number> {
  return ui.page.locator('table.requests tbody tr').evaluateAll((rows) => {
    for (const row of rows) Object.assign(row, { tag: `kept-${row.getAttribute('data-id')}` });
    return rows.length;
  });
}

/** Ids of the tagged rows still in the page as the very same nodes. */
async function keptRowIds(): Promise<number[]> {
  return ui.page.locator('table.requests tbody tr').evaluateAll((rows) => rows
    .filter((row) => (row as unknown as { tag?: string }).tag === `kept-${row.getAttribute('data-id')}`)
    .map((row) => Number(row.getAttribute('data-id'))));
}

function selectionText(): Promise<string> {
  return ui.page.evaluate<string>('String(window.getSelection())');
}

describe('live tail', () => {
  it('adds new rows at the top without redrawing the others, and keeps the keyboard focus', async () => {
    const { page } = ui;
    await page.clock.install();
    await ui.open('/?host=**.focus.example');
    for (let i = 0; i < 3; i += 1) recordAt(ui.admin.store, `h${i}.focus.example`, 'allow');
    await page.clock.runFor(2_000);
    await ui.waitForRowCount(3);
    const before = await ui.rowIds();
    await page.locator(`a[aria-label="Open request ${before[1]}"]`).focus();
    await page.evaluate('document.activeElement.marker = "focused"');
    expect(await tagRows()).toBe(3);

    const fresh = recordAt(ui.admin.store, 'new.focus.example', 'deny');
    await page.clock.runFor(2_000);
    await page.locator(`tr[data-id="${fresh}"]`).waitFor(WAIT);
    expect(await ui.rowIds()).toEqual([fresh, ...before]);
    expect(await keptRowIds()).toEqual(before);
    expect(await page.evaluate('document.activeElement.marker')).toBe('focused');
    expect(await page.locator(`tr[data-id="${fresh}"]`).getAttribute('class')).toContain('row-new');
    expect(await page.locator('button.new-rows').isHidden()).toBe(true);
  });

  it('holds new rows while text is selected, keeps the selection, and shows "N new"', async () => {
    const { page } = ui;
    await page.clock.install();
    for (let i = 0; i < 3; i += 1) recordAt(ui.admin.store, `h${i}.select.example`, 'allow');
    await ui.open('/?host=**.select.example');
    await ui.waitForRowCount(3);
    const before = await ui.rowIds();
    await tagRows();
    // Select the reason text of the second row, as a mouse drag would.
    await page.evaluate(`(() => {
      const range = document.createRange();
      range.selectNodeContents(document.querySelector('tr[data-id="${before[1]}"] .reason'));
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
    })()`);
    const selected = await selectionText();
    expect(selected).toBe('matched rule "github" (allow)');

    const fresh = [recordAt(ui.admin.store, 'n1.select.example', 'deny'), recordAt(ui.admin.store, 'n2.select.example', 'deny')];
    await page.clock.runFor(2_000);
    await page.locator('button.new-rows', { hasText: '2 new' }).waitFor(WAIT);
    expect(await ui.rowIds()).toEqual(before);
    expect(await keptRowIds()).toEqual(before);
    expect(await selectionText()).toBe(selected);

    // The button brings them in, at the top.
    await page.locator('button.new-rows').click();
    await page.locator(`tr[data-id="${fresh[1]}"]`).waitFor(WAIT);
    expect(await ui.rowIds()).toEqual([...[...fresh].reverse(), ...before]);
    expect(await page.locator('button.new-rows').isHidden()).toBe(true);
  });

  it('holds new rows while scrolled away from the top; "N new" brings them in and goes to the top', async () => {
    const { page } = ui;
    await page.clock.install();
    await ui.open('/');
    await ui.waitForRowCount(100);
    const before = await ui.rowIds();
    const top = await scrollTable(page, 1500);
    expect(top).toBeGreaterThan(1000);
    await tagRows();

    const fresh = recordAt(ui.admin.store, 'while-away.example', 'deny');
    await page.clock.runFor(2_000);
    await page.locator('button.new-rows', { hasText: '1 new' }).waitFor(WAIT);
    expect(await page.locator(`tr[data-id="${fresh}"]`).count()).toBe(0);
    expect(await page.evaluate('document.querySelector(".table-wrap").scrollTop')).toBe(top);
    expect(await keptRowIds()).toEqual(await ui.rowIds());

    await page.locator('button.new-rows').click();
    await page.locator(`tr[data-id="${fresh}"]`).waitFor(WAIT);
    expect(await page.evaluate('document.querySelector(".table-wrap").scrollTop')).toBe(0);
    expect((await ui.rowIds()).slice(0, 2)).toEqual([fresh, before[0]]);
  });

  it('brings held rows in by itself once the person scrolls back to the top', async () => {
    const { page } = ui;
    await page.clock.install();
    await ui.open('/');
    await ui.waitForRowCount(100);
    await scrollTable(page, 800);
    const fresh = recordAt(ui.admin.store, 'scroll-back.example', 'deny');
    await page.clock.runFor(2_000);
    await page.locator('button.new-rows', { hasText: '1 new' }).waitFor(WAIT);
    await scrollTable(page, 0);
    await page.locator(`tr[data-id="${fresh}"]`).waitFor(WAIT);
    expect((await ui.rowIds())[0]).toBe(fresh);
    expect(await page.locator('button.new-rows').isHidden()).toBe(true);
  });
});
