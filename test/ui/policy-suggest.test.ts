import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import type { AuditOpen } from '../../src/audit/record-types';
import type { SuggestResult } from '../../src/policy/suggest/suggest';
import { POLICY_FILES, screenshot } from './ui-harness';
import { UiSuite, WAIT } from './ui-suite';

jest.setTimeout(60_000);

/**
 * The Policy page's "Suggest rules" panel in real Chromium: the YAML of GET /api/policy/suggest
 * for the current filters, shown as text, copied and downloaded as 90-suggested.yaml.
 */
const ui = new UiSuite();

/** Free text a person excluded: it reaches the YAML's header (and the chips) as text. */
const HOSTILE_Q = '<img src=x onerror=alert(9)>';
const WIDGETS = ['a.widgets.example', 'b.widgets.example', 'c.widgets.example'];
const MINUTE = 60_000;

beforeAll(() => {
  // Report mode: the default lets everything through, the suggestion's starting point.
  const settings = path.join(ui.admin.policiesDir, '00-settings.yaml');
  writeFileSync(settings, POLICY_FILES['00-settings.yaml'].replace('mode: enforce', 'mode: report'));
  expect(ui.admin.holder.reload().ok).toBe(true);
  const now = Date.now();
  for (const [i, host] of [...WIDGETS, 'status.vendor.example'].entries()) {
    const startedAt = new Date(now - (30 + i) * MINUTE);
    const open: AuditOpen = {
      startedAt, clientIp: '10.0.12.7', clientPort: 42000 + i, clients: [], user: null, kind: 'connect', method: 'CONNECT', scheme: null,
      host, port: 443, path: null, resolvedIp: null, decision: 'allow', wouldDeny: true, rule: '(default)', ruleSource: null,
      reason: 'no rule matched; default deny (report mode: let through)', policyVersion: ui.admin.holder.active().policy.version,
    };
    ui.admin.store.record(open, { endedAt: startedAt, status: 200, bytesUp: 0, bytesDown: 0, error: null });
  }
});

const FILTERS = new URLSearchParams({ host: '**.widgets.example', 'not.q': HOSTILE_Q, since: '24h' });

async function openPanel(): Promise<void> {
  await ui.open(`/?view=policy&${FILTERS.toString()}`);
  await ui.page.locator('.suggest-panel').waitFor(WAIT);
}

/** Runs the suggestion; the page's own answer (the header names the instant it was made). */
async function runSuggestion(): Promise<SuggestResult> {
  const [response] = await Promise.all([
    ui.page.waitForResponse((r) => new URL(r.url()).pathname === '/api/policy/suggest', WAIT),
    ui.page.locator('#suggest-run').click(),
  ]);
  expect(response.status()).toBe(200);
  // The page asked for exactly the view's filters.
  expect(Object.fromEntries(new URL(response.url()).searchParams)).toEqual(Object.fromEntries(FILTERS));
  await ui.page.locator('pre.suggest-yaml').waitFor(WAIT);
  return (await response.json()) as SuggestResult;
}

describe('policy: suggest rules', () => {
  it('shows the YAML for the filtered view as text, with the filters it read and the summary', async () => {
    await openPanel();
    const panel = ui.page.locator('.suggest-panel');
    // Which filters apply, the hostile one as text in a chip.
    const chips = await panel.locator('.chip-filter').evaluateAll((nodes) => nodes.map((n) => n.getAttribute('data-filter')));
    expect(chips).toEqual(['host', 'since', 'not.q']);
    expect(await panel.locator('.chip-negated code').textContent()).toBe(HOSTILE_Q);
    const answer = await runSuggestion();
    const pre = panel.locator('pre.suggest-yaml');
    expect(await pre.textContent()).toBe(answer.yaml);
    expect(await pre.evaluate((node) => node.children.length)).toBe(0);
    expect(await ui.page.locator('img[src="x"]').count()).toBe(0);
    // Only the filtered hosts, as one glob; the hostile filter text is in the header comment.
    const rules = (parse(answer.yaml) as { rules: Array<{ hosts: string[] }> }).rules;
    expect(rules.map((r) => r.hosts)).toEqual([['**.widgets.example']]);
    expect(answer.yaml).toContain(`not.q=${HOSTILE_Q}`);
    expect(await panel.locator('.suggest-summary').textContent()).toMatch(/^1 allow rule for 3 requests to 3 destinations/);
    expect(await panel.locator('.suggest-order').textContent()).toContain('sorts after every other file (90-suggested.yaml)');
    await screenshot(ui.page, 'policy-suggest', { fullPage: true });
  });

  it('passes the options: every client, a minimum the widgets miss (left out, and why)', async () => {
    await openPanel();
    await ui.page.locator('#suggest-min').fill('2');
    await ui.page.locator('#suggest-by').selectOption('none');
    await ui.page.locator('#suggest-run').click();
    const rows = ui.page.locator('table.suggest-left-out tbody tr');
    await rows.first().waitFor(WAIT);
    expect(await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-reason')))).toEqual(['below_min_requests', 'below_min_requests', 'below_min_requests']);
    expect(await ui.page.locator('.suggest-summary').textContent()).toMatch(/^0 allow rules/);
  });

  it('downloads the YAML as 90-suggested.yaml', async () => {
    await openPanel();
    const answer = await runSuggestion();
    const link = ui.page.locator('a#suggest-download');
    expect(await link.getAttribute('download')).toBe('90-suggested.yaml');
    expect(await link.getAttribute('href')).toMatch(/^blob:http:\/\/127\.0\.0\.1:\d+\//);
    const [download] = await Promise.all([ui.page.waitForEvent('download', WAIT), link.click()]);
    expect(download.suggestedFilename()).toBe('90-suggested.yaml');
    const file = await download.path();
    expect(readFileSync(file, 'utf8')).toBe(answer.yaml);
  });

  it('copies the YAML to the clipboard', async () => {
    await ui.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: ui.admin.baseUrl });
    await openPanel();
    const answer = await runSuggestion();
    await ui.page.locator('#suggest-copy').click();
    await ui.page.getByText('Copied to the clipboard.').waitFor(WAIT);
    expect(await ui.page.evaluate('navigator.clipboard.readText()')).toBe(answer.yaml);
  });

  it('without a clipboard, selects the YAML for Ctrl+C', async () => {
    await ui.page.addInitScript({ content: "Object.defineProperty(Navigator.prototype, 'clipboard', { get: () => undefined });" });
    await openPanel();
    const answer = await runSuggestion();
    await ui.page.locator('#suggest-copy').click();
    await ui.page.getByText(/press Ctrl\+C/).waitFor(WAIT);
    // A selection's text ends at the last line's end (no trailing newline).
    expect(await ui.page.evaluate('window.getSelection().toString()')).toBe(answer.yaml.trimEnd());
  });
});
