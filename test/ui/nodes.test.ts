import { screenshot } from './ui-harness';
import { UiSuite, WAIT } from './ui-suite';

jest.setTimeout(60_000);

/** A node name is operator input, shown on every row: it must reach the page as text only. */
const NODE = '<img src=x onerror=alert(5)>node';

const ui = new UiSuite({ node: NODE });

describe('node in the UI', () => {
  it('shows a Node column whose cell pivots to node=, and a node filter', async () => {
    await ui.open('/');
    await ui.page.locator('table.requests tbody tr').first().waitFor(WAIT);
    expect(await ui.page.locator('th.col-node').textContent()).toContain('Node');
    const cells = await ui.page.locator('table.requests tbody td.col-node').allTextContents();
    expect(cells.length).toBeGreaterThan(10);
    expect(new Set(cells)).toEqual(new Set([NODE]));
    expect(await ui.page.locator('table.requests img').count()).toBe(0);
    await ui.page.locator('table.requests tbody td.col-node a').first().click();
    await ui.page.waitForURL((url) => url.searchParams.get('node') === NODE, WAIT);
    expect(await ui.page.locator('#f-node').inputValue()).toBe(NODE);
    await ui.page.locator('table.requests tbody tr').first().waitFor(WAIT);
    await ui.open(`/?node=${encodeURIComponent('another-node')}`);
    await ui.page.locator('#f-node').waitFor(WAIT);
    await ui.page.getByText(/no requests/i).first().waitFor(WAIT);
    expect(await ui.page.locator('table.requests tbody tr[data-id]').count()).toBe(0);
  });

  it('shows the Nodes panel on the overview', async () => {
    await ui.open('/?view=overview');
    const panel = ui.page.locator('section.panel.nodes');
    await panel.locator('tbody tr').first().waitFor(WAIT);
    expect(await panel.locator('tbody tr').count()).toBe(1);
    expect(await panel.locator('tbody tr td').first().textContent()).toBe(NODE);
    expect(await panel.locator('.node-flags').textContent()).toBe('ok');
    expect(await panel.locator('img').count()).toBe(0);
    await screenshot(ui.page, 'overview-nodes', { fullPage: true });
  });
});
