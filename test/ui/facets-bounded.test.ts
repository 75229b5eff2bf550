import { UiSuite, WAIT } from './ui-suite';

jest.setTimeout(60_000);

/**
 * An admin app whose facet tally stops after about 20 records (whole slices of 10 ids): what a million matching records look
 * like, shrunk to the seeded log. (The rest is still counted exactly here: the server counts in
 * slices of 65,536 ids, more than the log holds; "at least N" is checked on the page's module.)
 */
const ui = new UiSuite({ facetBudget: () => ({ tallyMs: 5_000, countMs: 5_000, sampleCap: 20, firstSliceIds: 10 }) });

interface Facets {
  total: number;
  total_exact: boolean;
  counts_exact: boolean;
  sampled: number;
  facets: { host: Array<{ value: string; count: number }> };
}

describe('facets over more records than the server tallies', () => {
  it('says over how many of the newest records the top values were counted', async () => {
    const answer = await ui.api<Facets>('/api/requests/facets?fields=host');
    expect(answer.counts_exact).toBe(false);
    expect(answer.sampled).toBeGreaterThanOrEqual(20);
    expect(answer.sampled).toBeLessThan(40);
    // The page's own answer: where a tally stops depends on the slices its query walks (its
    // fields and window), so the text is checked against what the page was told.
    const pageAnswer = ui.page.waitForResponse((r) => r.url().includes('/api/requests/facets'), WAIT);
    await ui.open('/');
    const seen = (await (await pageAnswer).json()) as Facets;
    expect(seen.counts_exact).toBe(false);
    const total = ui.page.locator('.facets-total-value');
    await total.waitFor(WAIT);
    expect(await total.textContent()).toBe(seen.total_exact ? seen.total.toLocaleString('en-US') : `at least ${seen.total.toLocaleString('en-US')}`);
    expect(seen.total).toBe(answer.total);
    expect(await total.textContent()).toBe(answer.total_exact ? answer.total.toLocaleString('en-US') : `at least ${answer.total.toLocaleString('en-US')}`);
    expect(await ui.page.locator('.facets-sampled').textContent()).toMatch(new RegExp(`^Top values counted over the newest ${seen.sampled} matches \\(since \\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2}:\\d{2}Z\\)\\.$`));
    const counts = await ui.page.locator('section.facet[data-facet="host"] .facet-count').allTextContents();
    expect(counts.map(Number)).toEqual(seen.facets.host.map((v) => v.count));
    expect(counts.map(Number).reduce((a, b) => a + b, 0)).toBe(seen.sampled);
  });

  it('an inexact total reads "at least N" (the page\'s own module, in the browser)', async () => {
    await ui.open('/');
    const texts = await ui.page.evaluate(`import('/js/facets-view.js').then((m) => [m.totalText(10000, false), m.totalText(1234, true)])`);
    expect(texts).toEqual(['at least 10,000', '1,234']);
  });
});
